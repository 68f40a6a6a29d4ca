// The API through openapi-fetch, typed by what openapi-typescript generates
// from the live /openapi.json (ecosystem/check.sh writes it to api.d.ts):
// one metric, a batch, a summary and a series, each answer checked; and a
// 400, 403, 404, 409 and 422, each caught as the one error type,
// `components["schemas"]["Error"]` (tsc fails if any call's `error` is
// typed otherwise).
//
//   node client.js <base URL> <ingest key> <read key> <admin token> <metric type>
import createClient from "openapi-fetch";
import type { components, paths } from "./api.js";

type NewMetric = components["schemas"]["NewMetric"];
type ApiError = components["schemas"]["Error"];
type ErrorCode = components["schemas"]["ErrorCode"];

// True only when A and B are the same type (not merely assignable).
type Same<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;

const [base, ingestKey, readKey, adminToken, type] = process.argv.slice(2);
if (!base || !ingestKey || !readKey || !adminToken || !type) {
  throw new Error("usage: node client.js <base URL> <ingest key> <read key> <admin token> <metric type>");
}

function check(condition: unknown, what: string): asserts condition {
  if (!condition) {
    throw new Error(`typescript client: ${what}`);
  }
}

// An error answer's body, as the one type every operation's `error` has.
function apiError(what: string, answer: { error?: ApiError; response: Response }, status: number, code: ErrorCode): ApiError {
  check(answer.response.status === status, `${what} answered ${answer.response.status}, not ${status}`);
  check(answer.error?.error === code, `${what}: ${JSON.stringify(answer.error)}, not \`${code}\``);
  return answer.error;
}

// Keys travel either way the document names: bearer or X-API-Key.
const writer = createClient<paths>({ baseUrl: base, headers: { Authorization: `Bearer ${ingestKey}` } });
const reader = createClient<paths>({ baseUrl: base, headers: { "X-API-Key": readKey } });
const admin = createClient<paths>({ baseUrl: base, headers: { Authorization: `Bearer ${adminToken}` } });

const now = Date.now();
const metric = (i: number, value: number): NewMetric => ({
  id: `${type}-${i}`,
  type,
  value,
  timestamp: new Date(now - i * 1000).toISOString(),
  user_id: `user-${i % 3}`,
  properties: { client: "openapi-fetch" },
});

const posted = await writer.POST("/api/metrics", { body: metric(0, 2.5) });
check(posted.response.status === 201, `POST /api/metrics answered ${posted.response.status}`);
check(posted.data?.id === `${type}-0` && posted.data.value === 2.5, `the stored metric: ${JSON.stringify(posted.data)}`);

const again = await writer.POST("/api/metrics", { body: metric(0, 2.5) });
check(again.response.status === 200 && again.data?.duplicate === true, `a re-post: ${again.response.status} ${JSON.stringify(again.data)}`);

const batch = await writer.POST("/api/metrics/batch", { body: Array.from({ length: 10 }, (_, i) => metric(i + 1, i + 1)) });
check(batch.data?.accepted === 10 && batch.data.rejected.length === 0, `the batch: ${JSON.stringify(batch.data ?? batch.error)}`);

// Errors: whatever the operation and status, `error` is the one Error type.
const refused = await reader.POST("/api/metrics", { body: metric(99, 1) });
const conflict = await writer.POST("/api/metrics", { body: metric(0, 3) });
const backwards = await reader.GET("/api/metrics/summary", {
  params: { query: { type, from: new Date(now).toISOString(), to: new Date(now - 3_600_000).toISOString() } },
});
const unknown = await admin.DELETE("/api/keys/{id}", { params: { path: { id: "key_0000000000000000" } } });
const nothing = await writer.POST("/api/metrics/batch", { body: [metric(98, 1e16)] });
const oneType: [
  Same<NonNullable<typeof refused.error>, ApiError>,
  Same<NonNullable<typeof conflict.error>, ApiError>,
  Same<NonNullable<typeof backwards.error>, ApiError>,
  Same<NonNullable<typeof unknown.error>, ApiError>,
  Same<NonNullable<typeof nothing.error>, ApiError>,
] = [true, true, true, true, true];
check(oneType.every(Boolean), "the error types");
const caught: ApiError[] = [
  apiError("a read key's post", refused, 403, "forbidden"),
  apiError("a different metric under a used id", conflict, 409, "id_conflict"),
  apiError("a summary from now back to an hour ago", backwards, 400, "invalid_parameter"),
  apiError("revoking a key that does not exist", unknown, 404, "not_found"),
  apiError("a batch of one out-of-range metric", nothing, 422, "nothing_accepted"),
];
const statuses = [refused, conflict, backwards, unknown, nothing].map((answer) => answer.response.status);
check(backwards.error?.details?.[0]?.field === "to", `the 400's details: ${JSON.stringify(backwards.error)}`);
check(
  nothing.error?.accepted === 0 && nothing.error.rejected?.length === 1 && nothing.error.rejected[0]?.error === "validation_failed",
  `the batch's rejection: ${JSON.stringify(nothing.error)}`,
);

const summary = await reader.GET("/api/metrics/summary", { params: { query: { type } } });
check(summary.data, `the summary: ${summary.response.status} ${JSON.stringify(summary.error)}`);
check(summary.data.count === 11 && summary.data.sum === 57.5, `the summary counts ${summary.data.count}, sums ${summary.data.sum}`);
check(summary.data.min_value === 1 && summary.data.max_value === 10 && summary.data.unique_users === 3, "the summary's min, max, users");

const from = new Date(now - 3_600_000).toISOString();
const series = await reader.GET("/api/metrics/series", { params: { query: { type, step: "1m", from } } });
check(series.data, `the series: ${series.response.status} ${JSON.stringify(series.error)}`);
const points = series.data.points;
const count = points.reduce((n, p) => n + p.count, 0);
const sum = points.reduce((s, p) => s + p.sum, 0);
check(series.data.step_seconds === 60 && count === 11 && sum === 57.5, `the series holds ${count} metrics summing to ${sum}`);

console.log(
  `typescript client: posted 1 metric (201, then 200 duplicate) and a batch of ${batch.data.accepted}; ` +
    `errors caught as Error: ${caught.map((e, i) => `${statuses[i]} ${e.error}`).join(", ")}; summary count ${summary.data.count} sum ${summary.data.sum}; ` +
    `series ${points.length} points of ${series.data.step_seconds} s holding ${count}`,
);
