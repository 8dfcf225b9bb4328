#!/usr/bin/env python3
"""Writes netblame.json, the Grafana dashboard for netblame serve: verdicts first (active
findings by layer), then limits, drops, latency, and the agent itself. Every panel's PromQL is
run against a real Prometheus by crates/netblame/tests/serve_prometheus.rs. Run it after editing:
python3 deploy/grafana/make-dashboard.py"""
import json, os

I = 'instance=~"$instance"'
R = '$__rate_interval'
rows = [
    ("Verdict", [
        ("stat", "Layer to blame (1 = blamed)", [(f'max by (layer) (netblame_blame{{{I}}})', "{{layer}}")]),
        ("timeseries", "Active findings by layer", [(f'sum by (layer) (netblame_finding_active{{{I}}})', "{{layer}}")]),
        ("table", "Active findings", [(f'max by (instance, id, layer, severity) (netblame_finding_active{{{I}}}) == 1', "")]),
        ("timeseries", "Findings raised", [(f'sum by (id) (increase(netblame_finding_raised_total{{{I}}}[{R}]))', "{{id}}")]),
    ]),
    ("Connections and limits", [
        ("timeseries", "Connections by state", [(f'sum by (state) (netblame_connections{{{I}}})', "{{state}}")]),
        ("timeseries", "What bounded senders", [(f'sum by (limit) (netblame_connections_limited{{{I}}})', "{{limit}}")]),
        ("timeseries", "Problem connections by process", [(f'topk(10, sum by (process, container) (netblame_process_problem_connections{{{I}}}))', "{{process}} {{container}}")]),
        ("timeseries", "Connections by process", [(f'topk(10, sum by (process, container) (netblame_process_connections{{{I}}}))', "{{process}} {{container}}")]),
        ("timeseries", "Connections with problems, full accept queues", [
            (f'sum(netblame_connections_problem{{{I}}})', "problem connections"),
            (f'sum(netblame_listeners_full{{{I}}})', "full listeners")]),
    ]),
    ("Drops", [
        ("timeseries", "Listen overflows and drops /s", [
            (f'sum by (instance) (rate(netblame_netstat_tcpext_listen_overflows_total{{{I}}}[{R}]))', "overflows {{instance}}"),
            (f'sum by (instance) (rate(netblame_netstat_tcpext_listen_drops_total{{{I}}}[{R}]))', "drops {{instance}}")]),
        ("timeseries", "Zero windows advertised /s", [
            (f'sum by (instance) (rate(netblame_netstat_tcpext_tcp_to_zero_window_adv_total{{{I}}}[{R}]))', "{{instance}}")]),
        ("timeseries", "Retransmitted segments /s", [
            (f'sum by (instance) (rate(netblame_netstat_tcp_retrans_segs_total{{{I}}}[{R}]))', "{{instance}}")]),
        ("timeseries", "softnet drops and squeezes /s", [
            (f'sum by (instance) (rate(netblame_softnet_dropped_total{{{I}}}[{R}]))', "dropped {{instance}}"),
            (f'sum by (instance) (rate(netblame_softnet_times_squeezed_total{{{I}}}[{R}]))', "squeezed {{instance}}")]),
        ("timeseries", "Device drops /s", [
            (f'sum by (device) (rate(netblame_network_receive_drop_total{{{I}}}[{R}]))', "rx {{device}}"),
            (f'sum by (device) (rate(netblame_network_transmit_drop_total{{{I}}}[{R}]))', "tx {{device}}")]),
        ("timeseries", "qdisc drops /s", [
            (f'sum by (device, kind) (rate(netblame_qdisc_drops_total{{{I}}}[{R}]))', "{{device}} {{kind}}")]),
        ("timeseries", "CPU throttling of socket owners (s/s)", [
            (f'sum by (cgroup) (rate(netblame_cgroup_throttled_seconds_total{{{I}}}[{R}]))', "{{cgroup}}")]),
    ]),
    ("Latency", [
        ("timeseries", "Probe latency p50 / p99", [
            (f'histogram_quantile(0.5, sum by (le, target) (rate(netblame_probe_latency_seconds_bucket{{{I}}}[{R}])))', "p50 {{target}}"),
            (f'histogram_quantile(0.99, sum by (le, target) (rate(netblame_probe_latency_seconds_bucket{{{I}}}[{R}])))', "p99 {{target}}")]),
        ("timeseries", "Probes slower than 0.9 s (waited for a SYN retransmit) /s", [
            (f'sum by (target) (rate(netblame_probe_latency_seconds_count{{{I}}}[{R}])) - sum by (target) (rate(netblame_probe_latency_seconds_bucket{{{I},le="0.9"}}[{R}]))', "{{target}}")]),
        ("timeseries", "Probe loss /s", [
            (f'sum by (target) (rate(netblame_probe_lost_total{{{I}}}[{R}]))', "lost {{target}}"),
            (f'sum by (target) (rate(netblame_probe_sent_total{{{I}}}[{R}]))', "sent {{target}}")]),
    ]),
    ("Kernel (trace = true)", [
        ("timeseries", "NET_RX softirq run time p50 / p99 (all CPUs)", [
            (f'histogram_quantile(0.5, sum by (le) (rate(netblame_trace_net_rx_softirq_seconds_bucket{{{I}}}[{R}])))', "p50"),
            (f'histogram_quantile(0.99, sum by (le) (rate(netblame_trace_net_rx_softirq_seconds_bucket{{{I}}}[{R}])))', "p99")]),
        ("timeseries", "Kernel drops by reason /s", [
            (f'topk(10, sum by (reason) (rate(netblame_trace_drops_total{{{I}}}[{R}])))', "{{reason}}")]),
    ]),
    ("Agent", [
        ("timeseries", "Scan duration", [(f'max by (instance) (netblame_scan_duration_seconds{{{I}}})', "{{instance}}")]),
        ("timeseries", "Label values collapsed into other", [(f'max by (metric) (netblame_labels_collapsed{{{I}}})', "{{metric}}")]),
    ]),
]

ds = {"type": "prometheus", "uid": "${datasource}"}
panels, pid, y = [], 1, 0
for title, items in rows:
    panels.append({"type": "row", "title": title, "id": pid, "collapsed": False,
                   "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}, "panels": []})
    pid += 1; y += 1
    x = 0
    for kind, ptitle, targets in items:
        w = 12 if kind == "table" else 8 if kind != "stat" else 6
        if x + w > 24:
            x = 0; y += 8
        p = {"type": kind, "title": ptitle, "id": pid, "datasource": ds,
             "gridPos": {"h": 8, "w": w, "x": x, "y": y},
             "targets": [{"refId": chr(65 + i), "datasource": ds, "expr": e, "legendFormat": l,
                          **({"instant": True, "format": "table"} if kind == "table" else {})}
                         for i, (e, l) in enumerate(targets)],
             "options": {}, "fieldConfig": {"defaults": {}, "overrides": []}}
        panels.append(p)
        pid += 1; x += w
    y += 8

dash = {
    "title": "netblame", "uid": "netblame", "tags": ["netblame", "tcp"], "timezone": "utc",
    "schemaVersion": 39, "version": 1, "refresh": "30s", "editable": True,
    "description": "What to blame when TCP is slow: verdicts first, then limits, drops and latency (netblame serve).",
    "time": {"from": "now-6h", "to": "now"},
    "templating": {"list": [
        {"name": "datasource", "type": "datasource", "query": "prometheus", "label": "Prometheus"},
        {"name": "instance", "type": "query", "datasource": ds, "label": "host",
         "query": {"query": "label_values(netblame_scans_total, instance)", "refId": "instance"},
         "definition": "label_values(netblame_scans_total, instance)",
         "includeAll": True, "multi": True, "allValue": ".+", "refresh": 2},
    ]},
    "annotations": {"list": []},
    "panels": panels,
}
out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "netblame.json")
with open(out, "w") as f:
    json.dump(dash, f, indent=2)
    f.write("\n")
