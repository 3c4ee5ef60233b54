"""DuckDB contender: the same gzip CloudTrail log files, read with read_json,
projected to the OCSF-like columns trailship and the VRL program write, and
written as zstd Parquet.

usage: python duckdb_ocsf.py IN_DIR OUT_FILE THREADS
Prints one JSON line: events and rows written.
"""

import json
import sys

import duckdb

in_dir, out, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
con = duckdb.connect()
con.execute(f"SET threads = {threads}")
con.execute("SET preserve_insertion_order = false")

# Records as JSON values: CloudTrail's requestParameters and responseElements
# differ per API, so a fixed struct cannot be inferred; a DuckDB user reads
# such logs as JSON and extracts paths.
query = f"""
COPY (
  WITH rec AS (
    SELECT unnest(Records) AS r
    FROM read_json('{in_dir}/**/*.json.gz', columns = {{Records: 'JSON[]'}},
                   format = 'unstructured', maximum_object_size = 268435456)
  ), f AS (
    SELECT r,
      r->>'$.eventName' AS name,
      r->>'$.eventSource' AS source,
      CAST(r->>'$.eventTime' AS TIMESTAMPTZ) AS ts,
      (r->>'$.errorCode') IS NOT NULL AS failed
    FROM rec
  )
  SELECT
    CASE WHEN name IN ('ConsoleLogin', 'AssumeRole', 'AssumeRoleWithSAML', 'AssumeRoleWithWebIdentity',
                       'GetSessionToken', 'GetFederationToken') THEN 3002
         WHEN source = 'iam.amazonaws.com' AND regexp_matches(name, '^(Create|Delete|Attach|Detach|Update|Put)') THEN 3001
         ELSE 6003 END AS class_uid,
    CASE WHEN regexp_matches(name, '^(Create|Run|Put)') THEN 1
         WHEN regexp_matches(name, '^(Get|Describe|List|Head)') THEN 2
         WHEN regexp_matches(name, '^(Update|Modify|Attach|Detach)') THEN 3
         WHEN regexp_matches(name, '^(Delete|Terminate|Remove)') THEN 4
         ELSE 99 END AS activity_id,
    epoch_ms(ts) AS time,
    ts AS time_dt,
    CASE WHEN failed THEN 2 ELSE 1 END AS status_id,
    CASE WHEN failed THEN 'Failure' ELSE 'Success' END AS status,
    {{'version': '1.3.0', 'uid': r->>'$.eventID', 'original_time': r->>'$.eventTime', 'event_code': name,
      'product': {{'name': 'CloudTrail', 'vendor_name': 'AWS', 'version': r->>'$.eventVersion'}}}} AS metadata,
    {{'provider': 'AWS', 'region': r->>'$.awsRegion', 'account': {{'uid': r->>'$.recipientAccountId'}}}} AS cloud,
    {{'user': {{'type': r->>'$.userIdentity.type', 'uid': r->>'$.userIdentity.principalId',
               'uid_alt': r->>'$.userIdentity.arn',
               'name': coalesce(r->>'$.userIdentity.userName', r->>'$.userIdentity.sessionContext.sessionIssuer.userName'),
               'credential_uid': r->>'$.userIdentity.accessKeyId',
               'account': {{'uid': r->>'$.userIdentity.accountId'}}}},
      'session': {{'created_time_dt': r->>'$.userIdentity.sessionContext.attributes.creationDate',
                  'is_mfa': TRY_CAST(r->>'$.userIdentity.sessionContext.attributes.mfaAuthenticated' AS BOOLEAN),
                  'issuer': r->>'$.userIdentity.sessionContext.sessionIssuer.arn'}},
      'invoked_by': r->>'$.userIdentity.invokedBy'}} AS actor,
    {{'ip': r->>'$.sourceIPAddress', 'uid': r->>'$.vpcEndpointId'}} AS src_endpoint,
    {{'user_agent': r->>'$.userAgent'}} AS http_request,
    {{'operation': name, 'version': r->>'$.apiVersion', 'service': {{'name': source}},
      'request': {{'uid': r->>'$.requestID', 'data': CAST(r->'$.requestParameters' AS VARCHAR)}},
      'response': {{'error': r->>'$.errorCode', 'message': r->>'$.errorMessage',
                   'data': CAST(r->'$.responseElements' AS VARCHAR)}}}} AS api,
    CAST(r->'$.resources' AS VARCHAR) AS resources,
    json_object('additionalEventData', r->'$.additionalEventData', 'tlsDetails', r->'$.tlsDetails',
                'eventType', r->'$.eventType', 'readOnly', r->'$.readOnly',
                'managementEvent', r->'$.managementEvent', 'eventCategory', r->'$.eventCategory',
                'sharedEventID', r->'$.sharedEventID') AS unmapped
  FROM f
) TO '{out}' (FORMAT parquet, COMPRESSION zstd, COMPRESSION_LEVEL 1, ROW_GROUP_SIZE 65536)
"""
con.execute(query)
rows = con.execute(f"SELECT count(*) FROM '{out}'").fetchone()[0]
print(json.dumps({"mode": "duckdb", "rows": rows}))
