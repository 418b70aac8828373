import BulkheadCore
import Prometheus
import Supervisor

/// Renders `/metrics` in the Prometheus text format: the host's own endpoint
/// (`serve --metrics`) and the control API's `/metrics` share it.
public enum MetricsText {
    /// The Prometheus text of a snapshot.
    public static func render(_ snapshot: MetricsSnapshot) -> String {
        // A registry per scrape, filled from the supervisor's running totals: the
        // totals only grow, so the counters are monotonic as Prometheus requires.
        let registry = PrometheusCollectorRegistry()
        for pool in snapshot.pools {
            let labels = [("pool", pool.name)]
            registry.makeCounter(descriptor: Self.name("bulkhead_requests_total", "Requests answered by the pool"), labels: labels)
                .increment(by: Int64(pool.totals.requests))
            for (status, count) in pool.totals.statuses.sorted(by: { $0.key < $1.key }) {
                registry.makeCounter(descriptor: Self.name("bulkhead_responses_total", "Responses by status"), labels: labels + [("status", status)]).increment(by: Int64(count))
            }
            for (kind, count) in pool.totals.errors.sorted(by: { $0.key < $1.key }) {
                registry.makeCounter(descriptor: Self.name("bulkhead_errors_total", "Failed requests by error kind"), labels: labels + [("kind", kind)]).increment(by: Int64(count))
            }
            registry.makeCounter(descriptor: Self.name("bulkhead_platform_errors_total", "Platform errors"), labels: labels)
                .increment(by: Int64(pool.totals.platformErrors))
            registry.makeCounter(descriptor: Self.name("bulkhead_worker_restarts_total", "Worker restarts"), labels: labels)
                .increment(by: Int64(pool.totals.restarts))
            for (key, counters) in pool.totals.scripts.sorted(by: { $0.key < $1.key }) {
                let parts = key.split(separator: "/", maxSplits: 1).map(String.init)
                guard parts.count == 2 else { continue }
                let scriptLabels = labels + [("customer", parts[0]), ("script", parts[1])]
                registry.makeCounter(descriptor: Self.name("bulkhead_script_requests_total", "Requests answered by a script"), labels: scriptLabels)
                    .increment(by: Int64(counters.requests))
                for (kind, count) in counters.errors.sorted(by: { $0.key < $1.key }) {
                    registry.makeCounter(descriptor: Self.name("bulkhead_script_errors_total", "A script's failed requests by kind"),
                                         labels: scriptLabels + [("kind", kind)]).increment(by: Int64(count))
                }
            }
            registry.makeGauge(descriptor: Self.name("bulkhead_workers_up", "Workers ready"), labels: labels).set(to: Double(pool.workersUp))
            registry.makeGauge(descriptor: Self.name("bulkhead_workers_desired", "Workers the pool should have"), labels: labels)
                .set(to: Double(pool.workersDesired))
            registry.makeGauge(descriptor: Self.name("bulkhead_pool_degraded", "1 when the pool restarts too often"), labels: labels)
                .set(to: pool.degraded ? 1 : 0)
        }
        // Break glass: absent (rather than 0) when the store could not say, so an
        // alert on `bulkhead_frozen == 1` is not silenced by a read error.
        if let frozen = snapshot.frozen {
            registry.makeGauge(descriptor: Self.name("bulkhead_frozen", "1 while rollouts are frozen (break glass)"))
                .set(to: frozen ? 1 : 0)
        }
        for (kind, version) in snapshot.pins.sorted(by: { $0.key < $1.key }) {
            registry.makeGauge(descriptor: Self.name("bulkhead_pinned_version", "The version an artifact kind is pinned to (break glass)"),
                               labels: [("kind", kind)]).set(to: Double(version))
        }
        var buffer: [UInt8] = []
        registry.emit(into: &buffer)
        return String(decoding: buffer, as: UTF8.self) + latencyHistogram(snapshot)
    }

    static func name(_ metric: String, _ help: String) -> MetricNameDescriptor {
        MetricNameDescriptor(metricName: metric, unitName: "", helpText: help)
    }

    /// The latency histogram, from the workers' pre-aggregated buckets. swift-prometheus
    /// histograms only take single observations; replaying every request into one would
    /// cost as much as the traffic, so these lines are written here.
    static func latencyHistogram(_ snapshot: MetricsSnapshot) -> String {
        let bounds: [Double] = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]
        var text = "# HELP bulkhead_request_duration_seconds Request latency in the worker\n"
        text += "# TYPE bulkhead_request_duration_seconds histogram\n"
        for pool in snapshot.pools {
            let counts = pool.totals.latency.counts
            var cumulative = 0
            var bucket = 0
            var approximateSum = 0.0
            for bound in bounds {
                while bucket < counts.count, LatencyHistogram.upperBound(ofBucket: bucket) / 1_000_000 <= bound {
                    cumulative += counts[bucket]
                    approximateSum += Double(counts[bucket]) * LatencyHistogram.upperBound(ofBucket: bucket) / 1_000_000
                    bucket += 1
                }
                text += "bulkhead_request_duration_seconds_bucket{pool=\"\(pool.name)\",le=\"\(bound)\"} \(cumulative)\n"
            }
            while bucket < counts.count {
                approximateSum += Double(counts[bucket]) * LatencyHistogram.upperBound(ofBucket: bucket) / 1_000_000
                bucket += 1
            }
            let total = counts.reduce(0, +)
            text += "bulkhead_request_duration_seconds_bucket{pool=\"\(pool.name)\",le=\"+Inf\"} \(total)\n"
            text += "bulkhead_request_duration_seconds_sum{pool=\"\(pool.name)\"} \(approximateSum)\n"
            text += "bulkhead_request_duration_seconds_count{pool=\"\(pool.name)\"} \(total)\n"
        }
        return text
    }
}
