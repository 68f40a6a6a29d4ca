"""The API through the client openapi-python-client generates from the live
/openapi.json: keys created with the admin token, one metric, a batch, a
summary and a series, each answer checked by its generated type; and a 400,
403, 404, 409 and 422 each caught as the one generated error type, `Error`,
by its `ErrorCode`.

    python client.py <generated package's parent dir> <base URL> <admin token> <metric type> <keys.json>

Writes the ingest and read keys it created to <keys.json> for the other checks.
"""

import datetime
import json
import sys

sys.path.insert(0, sys.argv[1])

from analytics_client import AuthenticatedClient  # noqa: E402
from analytics_client.api.analytics import get_series  # noqa: E402
from analytics_client.api.keys import create_key, revoke_key  # noqa: E402
from analytics_client.api.metrics import get_summary, ingest_batch, ingest_metric  # noqa: E402
from analytics_client.models import (  # noqa: E402
    BatchResult,
    Error,
    ErrorCode,
    KeyCreated,
    KeyRequest,
    MetricReceived,
    NewMetric,
    Scope,
    Series,
    Summary,
)
from analytics_client.types import UNSET  # noqa: E402


def check(condition, what):
    if not condition:
        sys.exit(f"python client: {what}")


def api_error(response, status, code, what):
    """The body of an error answer, as the one model every documented error
    response parses into: `Error`, whose `error` is an `ErrorCode`."""
    error = response.parsed
    check(response.status_code == status, f"{what} answered {response.status_code} {response.content!r}, not {status}")
    check(isinstance(error, Error), f"{what}: the {status} parsed as {type(error).__name__}, not Error")
    check(error.error is code, f"{what}: `error` is {error.error!r}, not {code!r}")
    return error


def main():
    _, base, admin_token, metric_type, keys_path = sys.argv[1:]
    admin = AuthenticatedClient(base_url=base, token=admin_token)
    keys = {}
    for scope in (Scope.INGEST, Scope.READ):
        created = create_key.sync(client=admin, body=KeyRequest(name=f"ecosystem {scope.value}", scopes=[scope]))
        check(isinstance(created, KeyCreated), f"POST /api/keys answered {created!r}")
        keys[scope.value] = created.key
    with open(keys_path, "w") as out:
        json.dump(keys, out)
    writer = AuthenticatedClient(base_url=base, token=keys["ingest"])
    reader = AuthenticatedClient(base_url=base, token=keys["read"])

    now = datetime.datetime.now(datetime.timezone.utc)

    def metric(i, value):
        return NewMetric(
            id=f"{metric_type}-{i}",
            type_=metric_type,
            value=value,
            timestamp=now - datetime.timedelta(seconds=i),
            user_id=f"user-{i % 3}",
        )

    posted = ingest_metric.sync_detailed(client=writer, body=metric(0, 2.5))
    check(posted.status_code == 201 and isinstance(posted.parsed, MetricReceived), f"POST /api/metrics: {posted.status_code} {posted.content!r}")
    check(posted.parsed.id == f"{metric_type}-0" and posted.parsed.value == 2.5, f"the stored metric: {posted.parsed!r}")
    again = ingest_metric.sync_detailed(client=writer, body=metric(0, 2.5))
    check(again.status_code == 200 and again.parsed.duplicate is True, f"a re-post: {again.status_code} {again.content!r}")

    batch = ingest_batch.sync(client=writer, body=[metric(i, float(i)) for i in range(1, 11)])
    check(isinstance(batch, BatchResult) and batch.accepted == 10 and not batch.rejected, f"the batch: {batch!r}")

    # Errors, each caught as the same type whatever the operation and status.
    refused = ingest_metric.sync_detailed(client=reader, body=metric(99, 1.0))
    api_error(refused, 403, ErrorCode.FORBIDDEN, "a read key's post")
    conflict = ingest_metric.sync_detailed(client=writer, body=metric(0, 3.0))
    api_error(conflict, 409, ErrorCode.ID_CONFLICT, "a different metric under a used id")
    # The generated function sends `period`'s default (`all`) unless told not to.
    backwards = get_summary.sync_detailed(client=reader, type_=metric_type, period=UNSET, from_=now, to=now - datetime.timedelta(hours=1))
    bad = api_error(backwards, 400, ErrorCode.INVALID_PARAMETER, "a summary from now back to an hour ago")
    check(isinstance(bad.details, list) and bad.details and bad.details[0].field == "to", f"the 400's details: {bad.to_dict()}")
    unknown = revoke_key.sync_detailed("key_0000000000000000", client=admin)
    api_error(unknown, 404, ErrorCode.NOT_FOUND, "revoking a key that does not exist")
    # A batch with no valid item: the 422 is the same `Error`, with the batch's rejections.
    nothing = ingest_batch.sync_detailed(client=writer, body=[metric(98, 1e16)])
    rejection = api_error(nothing, 422, ErrorCode.NOTHING_ACCEPTED, "a batch of one out-of-range metric")
    check(
        rejection.accepted == 0 and len(rejection.rejected) == 1 and rejection.rejected[0].error is ErrorCode.VALIDATION_FAILED,
        f"the batch's rejection: {rejection.to_dict()}",
    )
    caught = [refused, conflict, backwards, unknown, nothing]

    summary = get_summary.sync(client=reader, type_=metric_type)
    check(isinstance(summary, Summary), f"the summary: {summary!r}")
    check((summary.count, summary.sum_, summary.min_value, summary.max_value, summary.unique_users) == (11, 57.5, 1.0, 10.0, 3), f"the summary: {summary.to_dict()}")

    series = get_series.sync(client=reader, type_=metric_type, step="1m", from_=now - datetime.timedelta(hours=1))
    check(isinstance(series, Series), f"the series: {series!r}")
    count = sum(p.count for p in series.points)
    total = sum(p.sum_ for p in series.points)
    check((series.step_seconds, count, total) == (60, 11, 57.5), f"the series holds {count} metrics summing to {total}")

    print(
        f"python client: created an ingest and a read key; posted 1 metric (201, then 200 duplicate) and a batch of {batch.accepted}; "
        f"errors caught as Error: {', '.join(f'{r.status_code} {r.parsed.error}' for r in caught)}; summary count {summary.count} sum {summary.sum_}; "
        f"series {len(series.points)} points of {series.step_seconds} s holding {count}"
    )


if __name__ == "__main__":
    main()
