-- Athena / AWS Glue table over dnsgeo's QuickSight output
-- (`dnsgeo enrich --format quicksight`, or POST /v1/enrich?format=quicksight),
-- stored as JSON lines in S3. Every row of every input kind (Route 53 Resolver,
-- DNS Firewall, OCSF DNS Activity, ECS, Zeek, Sysmon, anything else) has exactly
-- these columns, null when a value is absent: one schema for every source.
-- The original record is in `record` as its own JSON text; reach any of its fields
-- with json_extract_scalar(record, '$.srcids.instance'). Replace the bucket and prefix.
CREATE EXTERNAL TABLE IF NOT EXISTS dnsgeo_dns_queries (
  record_kind               string,   -- route53 | dns_firewall | ocsf | ecs | zeek | sysmon | custom | unknown
  event_time                string,   -- the record's own time as it wrote it (ISO 8601, epoch seconds or ms)
  query_name                string,
  query_type                string,
  rcode                     string,
  src_ip                    string,   -- the client that asked
  answers                   string,   -- the record's answer data, ';'-joined
  firewall_rule_action      string,   -- Route 53 DNS Firewall only
  log_group                 string,   -- CloudWatch Logs envelope
  log_stream                string,
  answer_ip                 string,
  answer_ips                string,   -- all answer IPs, ';'-joined
  geo_lat                   double,   -- decimal degrees
  geo_lon                   double,   -- decimal degrees
  geo_country_code          string,   -- ISO 3166-1 alpha-2
  geo_country               string,
  geo_region                string,
  geo_city                  string,
  geo_postal_code           string,
  geo_timezone              string,
  as_number                 bigint,
  as_org                    string,
  org                       string,
  isp                       string,
  enrichment_status         string,   -- enriched | partial | pending | skipped | error
  enrichment_reason         string,
  policy_tags               string,
  record                    string    -- the original record, JSON text exactly as it came
)
ROW FORMAT SERDE 'org.openx.data.jsonserde.JsonSerDe'
WITH SERDEPROPERTIES ('ignore.malformed.json' = 'true')
LOCATION 's3://example-bucket/dnsgeo/quicksight/';
