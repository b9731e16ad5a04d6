//! The part of OpenTelemetry's OTLP `MetricsData` (opentelemetry/proto/metrics/v1) that a
//! KIP-714 push carries, as prost messages: field numbers are OTLP's, fields Weir does not
//! read are left out (protobuf skips them), and the payload is flattened into data points.

use prost::Message;

#[derive(Clone, PartialEq, Message)]
pub struct MetricsData {
    #[prost(message, repeated, tag = "1")]
    pub resource_metrics: Vec<ResourceMetrics>,
}

#[derive(Clone, PartialEq, Message)]
pub struct ResourceMetrics {
    #[prost(message, optional, tag = "1")]
    pub resource: Option<Resource>,
    #[prost(message, repeated, tag = "2")]
    pub scope_metrics: Vec<ScopeMetrics>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Resource {
    #[prost(message, repeated, tag = "1")]
    pub attributes: Vec<KeyValue>,
}

#[derive(Clone, PartialEq, Message)]
pub struct ScopeMetrics {
    #[prost(message, repeated, tag = "2")]
    pub metrics: Vec<Metric>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Metric {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(oneof = "Data", tags = "5, 7, 9")]
    pub data: Option<Data>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
pub enum Data {
    #[prost(message, tag = "5")]
    Gauge(Gauge),
    #[prost(message, tag = "7")]
    Sum(Sum),
    #[prost(message, tag = "9")]
    Histogram(Histogram),
}

#[derive(Clone, PartialEq, Message)]
pub struct Gauge {
    #[prost(message, repeated, tag = "1")]
    pub data_points: Vec<NumberDataPoint>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Sum {
    #[prost(message, repeated, tag = "1")]
    pub data_points: Vec<NumberDataPoint>,
    #[prost(int32, tag = "2")]
    pub aggregation_temporality: i32,
    #[prost(bool, tag = "3")]
    pub is_monotonic: bool,
}

#[derive(Clone, PartialEq, Message)]
pub struct Histogram {
    #[prost(message, repeated, tag = "1")]
    pub data_points: Vec<HistogramDataPoint>,
}

#[derive(Clone, PartialEq, Message)]
pub struct NumberDataPoint {
    #[prost(fixed64, tag = "3")]
    pub time_unix_nano: u64,
    #[prost(oneof = "Value", tags = "4, 6")]
    pub value: Option<Value>,
    #[prost(message, repeated, tag = "7")]
    pub attributes: Vec<KeyValue>,
}

#[derive(Clone, Copy, PartialEq, prost::Oneof)]
pub enum Value {
    #[prost(double, tag = "4")]
    AsDouble(f64),
    #[prost(sfixed64, tag = "6")]
    AsInt(i64),
}

#[derive(Clone, PartialEq, Message)]
pub struct HistogramDataPoint {
    #[prost(fixed64, tag = "4")]
    pub count: u64,
    #[prost(double, optional, tag = "5")]
    pub sum: Option<f64>,
    #[prost(message, repeated, tag = "9")]
    pub attributes: Vec<KeyValue>,
}

#[derive(Clone, PartialEq, Message)]
pub struct KeyValue {
    #[prost(string, tag = "1")]
    pub key: String,
    #[prost(message, optional, tag = "2")]
    pub value: Option<AnyValue>,
}

#[derive(Clone, PartialEq, Message)]
pub struct AnyValue {
    #[prost(oneof = "AnyValueKind", tags = "1, 2, 3, 4")]
    pub value: Option<AnyValueKind>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
pub enum AnyValueKind {
    #[prost(string, tag = "1")]
    String(String),
    #[prost(bool, tag = "2")]
    Bool(bool),
    #[prost(int64, tag = "3")]
    Int(i64),
    #[prost(double, tag = "4")]
    Double(f64),
}

/// How a pushed metric is exposed: a gauge, a (cumulative) counter, or a histogram's
/// count and sum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Gauge,
    Counter,
}

/// One value of one metric for one set of attributes.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    pub name: String,
    pub kind: Kind,
    /// Resource and data-point attributes, as `(key, value)` strings.
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

/// Decodes an (uncompressed) OTLP `MetricsData` payload into data points.
pub fn decode(payload: &[u8]) -> Result<Vec<Point>, prost::DecodeError> {
    let data = MetricsData::decode(payload)?;
    let mut out = Vec::new();
    for rm in data.resource_metrics {
        let resource: Vec<(String, String)> =
            rm.resource.map(|r| r.attributes.iter().filter_map(label).collect()).unwrap_or_default();
        for metric in rm.scope_metrics.into_iter().flat_map(|s| s.metrics) {
            let labels_of = |attrs: &[KeyValue]| {
                let mut l = resource.clone();
                l.extend(attrs.iter().filter_map(label));
                l
            };
            let mut push = |name: String, kind, attrs: &[KeyValue], value: f64| {
                out.push(Point { name, kind, labels: labels_of(attrs), value });
            };
            match metric.data {
                Some(Data::Gauge(g)) => {
                    for p in &g.data_points {
                        push(metric.name.clone(), Kind::Gauge, &p.attributes, number(p));
                    }
                }
                Some(Data::Sum(s)) => {
                    let kind = if s.is_monotonic { Kind::Counter } else { Kind::Gauge };
                    for p in &s.data_points {
                        push(metric.name.clone(), kind, &p.attributes, number(p));
                    }
                }
                Some(Data::Histogram(h)) => {
                    for p in &h.data_points {
                        push(format!("{}.count", metric.name), Kind::Counter, &p.attributes, p.count as f64);
                        if let Some(sum) = p.sum {
                            push(format!("{}.sum", metric.name), Kind::Counter, &p.attributes, sum);
                        }
                    }
                }
                None => {}
            }
        }
    }
    Ok(out)
}

fn number(p: &NumberDataPoint) -> f64 {
    match p.value {
        Some(Value::AsDouble(d)) => d,
        Some(Value::AsInt(i)) => i as f64,
        None => 0.0,
    }
}

fn label(kv: &KeyValue) -> Option<(String, String)> {
    let v = match kv.value.as_ref()?.value.as_ref()? {
        AnyValueKind::String(s) => s.clone(),
        AnyValueKind::Bool(b) => b.to_string(),
        AnyValueKind::Int(i) => i.to_string(),
        AnyValueKind::Double(d) => d.to_string(),
    };
    Some((kv.key.clone(), v))
}
