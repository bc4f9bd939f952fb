//! The `metrics` facade as an OpenTelemetry meter: a recorder that turns every counter, gauge and
//! histogram the code records (the same ones `/metrics` serves) into OTel instruments of the same
//! name and labels, exported over OTLP by the SDK's periodic reader.
//!
//! Installed beside the Prometheus recorder (fanned out) only when OTLP export is configured, so
//! the call sites stay the one source of truth and nothing changes when it is off. Recording only
//! updates the SDK's in-memory aggregates; the export runs on the reader's own thread, so a slow
//! or dead collector never blocks a request.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use metrics::{Counter, CounterFn, Gauge, GaugeFn, Histogram, HistogramFn, Key, KeyName, Metadata, SharedString, Unit};
use opentelemetry::KeyValue;
use opentelemetry::metrics::Meter;

/// One labelled counter.
struct OtelCounter {
    counter: opentelemetry::metrics::Counter<u64>,
    attributes: Vec<KeyValue>,
    /// The last absolute value set, so `absolute` adds only the difference.
    absolute: AtomicU64,
}

impl CounterFn for OtelCounter {
    fn increment(&self, value: u64) {
        self.counter.add(value, &self.attributes);
    }

    fn absolute(&self, value: u64) {
        let previous = self.absolute.fetch_max(value, Ordering::Relaxed);
        if value > previous {
            self.counter.add(value - previous, &self.attributes);
        }
    }
}

/// One labelled gauge; keeps its value so increments and decrements can be recorded as a value.
struct OtelGauge {
    gauge: opentelemetry::metrics::Gauge<f64>,
    attributes: Vec<KeyValue>,
    bits: AtomicU64,
}

impl OtelGauge {
    fn update(&self, change: impl Fn(f64) -> f64) {
        let mut current = self.bits.load(Ordering::Relaxed);
        loop {
            let next = change(f64::from_bits(current));
            match self.bits.compare_exchange_weak(current, next.to_bits(), Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return self.gauge.record(next, &self.attributes),
                Err(actual) => current = actual,
            }
        }
    }
}

impl GaugeFn for OtelGauge {
    fn increment(&self, value: f64) {
        self.update(|v| v + value);
    }

    fn decrement(&self, value: f64) {
        self.update(|v| v - value);
    }

    fn set(&self, value: f64) {
        self.update(|_| value);
    }
}

/// One labelled histogram.
struct OtelHistogram {
    histogram: opentelemetry::metrics::Histogram<f64>,
    attributes: Vec<KeyValue>,
}

impl HistogramFn for OtelHistogram {
    fn record(&self, value: f64) {
        self.histogram.record(value, &self.attributes);
    }
}

/// A `metrics` recorder over an OpenTelemetry meter. Each key (name and labels) is resolved to
/// its instrument and attributes once; later registrations of the same key share the handle.
pub(crate) struct OtelRecorder {
    meter: Meter,
    /// Histogram bucket boundaries (seconds), the same as the Prometheus recorder's.
    boundaries: Vec<f64>,
    counters: RwLock<HashMap<Key, Arc<OtelCounter>>>,
    gauges: RwLock<HashMap<Key, Arc<OtelGauge>>>,
    histograms: RwLock<HashMap<Key, Arc<OtelHistogram>>>,
}

fn attributes(key: &Key) -> Vec<KeyValue> {
    key.labels().map(|l| KeyValue::new(l.key().to_owned(), l.value().to_owned())).collect()
}

/// The handle registered for `key`, made by `make` the first time.
fn registered<T>(map: &RwLock<HashMap<Key, Arc<T>>>, key: &Key, make: impl FnOnce() -> T) -> Arc<T> {
    if let Some(found) = map.read().unwrap_or_else(|e| e.into_inner()).get(key) {
        return found.clone();
    }
    map.write().unwrap_or_else(|e| e.into_inner()).entry(key.clone()).or_insert_with(|| Arc::new(make())).clone()
}

impl OtelRecorder {
    pub(crate) fn new(meter: Meter, boundaries: &[f64]) -> Self {
        Self {
            meter,
            boundaries: boundaries.to_vec(),
            counters: RwLock::default(),
            gauges: RwLock::default(),
            histograms: RwLock::default(),
        }
    }
}

impl metrics::Recorder for OtelRecorder {
    // Descriptions are not used by Gofer's metrics; the names say what they are.
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        Counter::from_arc(registered(&self.counters, key, || OtelCounter {
            counter: self.meter.u64_counter(key.name().to_owned()).build(),
            attributes: attributes(key),
            absolute: AtomicU64::new(0),
        }))
    }

    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::from_arc(registered(&self.gauges, key, || OtelGauge {
            gauge: self.meter.f64_gauge(key.name().to_owned()).build(),
            attributes: attributes(key),
            bits: AtomicU64::new(0f64.to_bits()),
        }))
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::from_arc(registered(&self.histograms, key, || OtelHistogram {
            histogram: self
                .meter
                .f64_histogram(key.name().to_owned())
                .with_unit("s")
                .with_boundaries(self.boundaries.clone())
                .build(),
            attributes: attributes(key),
        }))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Duration;

    use super::*;
    use metrics::Recorder as _;
    use opentelemetry::metrics::MeterProvider as _;
    use opentelemetry_sdk::error::OTelSdkResult;
    use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData, ResourceMetrics};
    use opentelemetry_sdk::metrics::exporter::PushMetricExporter;
    use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider, Temporality};

    static META: Metadata<'static> = Metadata::new(module_path!(), metrics::Level::INFO, None);

    /// One exported point: name, attributes, value (or bounds and bucket counts).
    type Point = (String, Vec<KeyValue>, String);

    /// Every exported point.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<Point>>>);

    impl PushMetricExporter for Captured {
        async fn export(&self, metrics: &ResourceMetrics) -> OTelSdkResult {
            let mut points = self.0.lock().expect("lock");
            for metric in metrics.scope_metrics().flat_map(|s| s.metrics()) {
                let name = metric.name().to_owned();
                match metric.data() {
                    AggregatedMetrics::U64(MetricData::Sum(sum)) => points.extend(
                        sum.data_points()
                            .map(|p| (name.clone(), p.attributes().cloned().collect(), p.value().to_string())),
                    ),
                    AggregatedMetrics::F64(MetricData::Gauge(gauge)) => points.extend(
                        gauge
                            .data_points()
                            .map(|p| (name.clone(), p.attributes().cloned().collect(), p.value().to_string())),
                    ),
                    AggregatedMetrics::F64(MetricData::Histogram(histogram)) => {
                        points.extend(histogram.data_points().map(|p| {
                            let counts = format!(
                                "{:?} {:?}",
                                p.bounds().collect::<Vec<_>>(),
                                p.bucket_counts().collect::<Vec<_>>()
                            );
                            (name.clone(), p.attributes().cloned().collect(), counts)
                        }))
                    }
                    other => panic!("unexpected {other:?}"),
                }
            }
            Ok(())
        }

        fn force_flush(&self) -> OTelSdkResult {
            Ok(())
        }

        fn shutdown_with_timeout(&self, _: Duration) -> OTelSdkResult {
            Ok(())
        }

        fn temporality(&self) -> Temporality {
            Temporality::Cumulative
        }
    }

    #[test]
    fn counters_gauges_and_histograms_reach_the_meter_with_their_labels() {
        let exporter = Captured::default();
        let provider =
            SdkMeterProvider::builder().with_reader(PeriodicReader::builder(exporter.clone()).build()).build();
        let recorder = OtelRecorder::new(provider.meter("test"), &[0.1, 1.0]);
        let key = Key::from_parts("requests_total", vec![metrics::Label::new("route", "/runs")]);
        recorder.register_counter(&key, &META).increment(2);
        recorder.register_counter(&key, &META).increment(3);
        recorder.register_gauge(&Key::from_name("depth"), &META).set(7.0);
        recorder.register_gauge(&Key::from_name("depth"), &META).decrement(2.0);
        recorder.register_histogram(&Key::from_name("latency_seconds"), &META).record(0.5);
        provider.force_flush().expect("flush");

        let points = exporter.0.lock().expect("lock").clone();
        let route = vec![KeyValue::new("route", "/runs")];
        assert!(points.contains(&("requests_total".into(), route, "5".into())), "{points:?}");
        assert!(points.contains(&("depth".into(), vec![], "5".into())), "{points:?}");
        assert!(points.contains(&("latency_seconds".into(), vec![], "[0.1, 1.0] [0, 1, 0]".into())), "{points:?}");
    }
}
