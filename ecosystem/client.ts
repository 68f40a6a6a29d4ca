// The API through openapi-fetch, typed by what openapi-typescript generates
// from the live /openapi.json (ecosystem/check.sh writes it to api.d.ts):
// one metric, a batch, a summary and a series, each answer checked.
//
//   node client.js <base URL> <ingest key> <read key> <metric type>
import createClient from "openapi-fetch";
import type { components, paths } from "./api.js";

type NewMetric = components["schemas"]["NewMetric"];

const [base, ingestKey, readKey, type] = process.argv.slice(2);
if (!base || !ingestKey || !readKey || !type) {
  throw new Error("usage: node client.js <base URL> <ingest key> <read key> <metric type>");
}

function check(condition: unknown, what: string): asserts condition {
  if (!condition) {
    throw new Error(`typescript client: ${what}`);
  }
}

// Keys travel either way the document names: bearer or X-API-Key.
const writer = createClient<paths>({ baseUrl: base, headers: { Authorization: `Bearer ${ingestKey}` } });
const reader = createClient<paths>({ baseUrl: base, headers: { "X-API-Key": readKey } });

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

// A read key may not write: the typed error says why.
const refused = await reader.POST("/api/metrics", { body: metric(99, 1) });
check(refused.response.status === 403 && refused.error?.error === "forbidden", `a read key's post: ${refused.response.status}`);

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
    `a read key's post refused (403 ${refused.error.error}); summary count ${summary.data.count} sum ${summary.data.sum}; ` +
    `series ${points.length} points of ${series.data.step_seconds} s holding ${count}`,
);
