-- Athena / AWS Glue table over dnsgeo's QuickSight output
-- (`dnsgeo enrich --format quicksight`, or POST /v1/enrich?format=quicksight),
-- stored as JSON lines in S3. Every row has every dnsgeo column (null when
-- unknown), so this schema stays stable. Replace the bucket and prefix.
CREATE EXTERNAL TABLE IF NOT EXISTS dnsgeo_resolver_queries (
  -- dnsgeo's columns (enrichment), first in every row
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
  -- the Route 53 Resolver query log record, flattened with '_'
  version                   string,
  account_id                string,
  region                    string,
  vpc_id                    string,
  query_timestamp           string,   -- ISO 8601; from_iso8601_timestamp(query_timestamp) in queries
  query_name                string,
  query_type                string,
  query_class               string,
  rcode                     string,
  answers                   string,   -- every answer's Rdata, ';'-joined
  srcaddr                   string,
  srcport                   string,
  transport                 string,
  srcids_instance           string,
  srcids_resolver_endpoint  string,
  -- Route 53 DNS Firewall records add these
  firewall_rule_group_id    string,
  firewall_rule_action      string,
  firewall_domain_list_id   string
)
ROW FORMAT SERDE 'org.openx.data.jsonserde.JsonSerDe'
WITH SERDEPROPERTIES ('ignore.malformed.json' = 'true')
LOCATION 's3://example-bucket/dnsgeo/quicksight/';
