"""Build ops/grafana/facestream.json (the Grafana dashboard): `python ops/grafana/build_dashboard.py`.

Panels over the metric names of pipeline/metrics.py and connectors/api/app.py, plus kafka-exporter lag.
"""

import json
from pathlib import Path

OUT = Path(__file__).resolve().parent / "facestream.json"

P = "${datasource}"
panels = []
y = 0
pid = 1
def row(title):
    global y, pid
    panels.append({"type": "row", "title": title, "id": pid, "collapsed": False, "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}, "panels": []})
    pid += 1; y += 1
def ts(title, targets, unit="short", x=0, w=12, h=8, desc="", stack=False):
    global pid
    p = {"type": "timeseries", "title": title, "id": pid, "description": desc,
         "datasource": {"type": "prometheus", "uid": P},
         "gridPos": {"h": h, "w": w, "x": x, "y": y},
         "fieldConfig": {"defaults": {"unit": unit, "custom": {"drawStyle": "line", "lineWidth": 1, "fillOpacity": 10,
                                                                 "stacking": {"mode": "normal" if stack else "none"}}}, "overrides": []},
         "options": {"legend": {"displayMode": "table", "placement": "bottom", "calcs": ["lastNotNull", "max"]},
                     "tooltip": {"mode": "multi"}},
         "targets": [{"refId": chr(65 + i), "expr": e, "legendFormat": l, "datasource": {"type": "prometheus", "uid": P}}
                     for i, (e, l) in enumerate(targets)]}
    panels.append(p); pid += 1
def nl(h=8):
    global y
    y += h
S = 'stage=~"$stage"'
row("Throughput")
ts("Messages in / s by stage", [(f'sum by (stage) (rate(facestream_messages_in_total{{{S}}}[1m]))', "{{stage}}")], "ops", 0,
   desc="facestream_messages_in_total: messages consumed by each stage (all its replicas).")
ts("Messages out / s by stage and topic", [(f'sum by (stage, topic) (rate(facestream_messages_out_total{{{S}}}[1m]))', "{{stage}} -> {{topic}}")], "ops", 12,
   desc="facestream_messages_out_total: messages produced and acknowledged.")
nl()
ts("Frames decoded / s and frames not detected (predicted) / s by camera", [('sum by (camera) (rate(facestream_frames_decoded_total[1m]))', "{{camera}}"),
                                                                           ('sum by (camera) (rate(facestream_frames_predicted_total[1m]))', "{{camera}} predicted")], "ops", 0,
   desc="facestream_frames_decoded_total: frames decoded and published by the decoders. facestream_frames_predicted_total: frames the detector did not run on (detector.detect_interval_s), the tracker predicting the faces' boxes.")
ts("Faces detected / s", [(f'sum by (stage) (rate(facestream_faces_detected_total{{{S}}}[1m]))', "{{stage}}")], "ops", 12,
   desc="facestream_faces_detected_total: faces found in frames (before tracking and best-face selection).")
nl()
ts("Frames dropped / s by camera and reason", [('sum by (camera, reason) (rate(facestream_frames_dropped_total[1m]))', "{{camera}} {{reason}}")], "ops", 0,
   desc="facestream_frames_dropped_total: live frames dropped (decoder: send_backlog, the broker was behind; send_failed. detector: detector_behind, too old when taken).")
ts("Input age per stage (p50 / p95)", [
    (f'histogram_quantile(0.5, sum by (le, stage) (rate(facestream_input_age_seconds_bucket{{{S}}}[1m])))', "{{stage}} p50"),
    (f'histogram_quantile(0.95, sum by (le, stage) (rate(facestream_input_age_seconds_bucket{{{S}}}[1m])))', "{{stage}} p95"),
    ('max by (detector) (facestream_live_detect_stretch_seconds)', "{{detector}} live detection stretch")], "s", 12,
   desc="facestream_input_age_seconds: how long a stage's inputs waited between their producer and the stage (one hop each). facestream_live_detect_stretch_seconds: what a detector adds to its live cameras' detection interval to keep up (detector.live_target_age_s).")
nl()
row("Health and errors")
ts("Handler errors / s", [(f'sum by (stage) (rate(facestream_errors_total{{{S}}}[5m]))', "{{stage}}")], "ops", 0, w=8,
   desc="facestream_errors_total: batches whose handler raised (then retried message by message).")
ts("Dead letters / s", [(f'sum by (stage) (rate(facestream_dead_letters_total{{{S}}}[5m]))', "{{stage}}")], "ops", 8, w=8,
   desc="facestream_dead_letters_total: poison messages sent to the dead-letter topic.")
ts("Workers up by stage / sources up", [(f'sum by (stage) (facestream_stage_up{{{S}}})', "{{stage}} workers"),
                                         ('sum(facestream_source_up)', "camera sources open")], "short", 16, w=8,
   desc="facestream_stage_up (1 per running worker) and facestream_source_up (1 per open camera source).")
nl()
ts("Role restarts (facestream up)", [('sum by (role) (increase(facestream_role_restarts_total[15m]))', "{{role}}")], "short", 0, w=12,
   desc="facestream_role_restarts_total: crashed roles restarted by `facestream up` (also in `facestream ops status`).")
ts("Shared resources opened per process", [('sum by (kind, instance) (facestream_resources_opened_total)', "{{kind}} {{instance}}")], "short", 12, w=12,
   desc="facestream_resources_opened_total: SQL engines, producers, vector and media stores, face models opened; 1 each per process.")
nl()
row("Latency and batching")
ts("Handle time per batch (p50 / p95)", [
    (f'histogram_quantile(0.5, sum by (le, stage) (rate(facestream_handle_seconds_bucket{{{S}}}[1m])))', "{{stage}} p50"),
    (f'histogram_quantile(0.95, sum by (le, stage) (rate(facestream_handle_seconds_bucket{{{S}}}[1m])))', "{{stage}} p95")], "s", 0, w=8,
   desc="facestream_handle_seconds: time in the agent's handle() per batch.")
ts("Produce-ack + commit time (p95)", [
    (f'histogram_quantile(0.95, sum by (le, stage) (rate(facestream_commit_seconds_bucket{{{S}}}[1m])))', "{{stage}}")], "s", 8, w=8,
   desc="facestream_commit_seconds: waiting for output acknowledgements then committing input offsets.")
ts("Frame-to-output age (p50 / p95)", [
    (f'histogram_quantile(0.5, sum by (le, stage) (rate(facestream_frame_to_output_seconds_bucket{{{S}}}[1m])))', "{{stage}} p50"),
    (f'histogram_quantile(0.95, sum by (le, stage) (rate(facestream_frame_to_output_seconds_bucket{{{S}}}[1m])))', "{{stage}} p95")], "s", 16, w=8,
   desc="facestream_frame_to_output_seconds: age of the source frame when a stage emits (end-to-end latency at the matcher).")
nl()
ts("Batch size (mean and p95)", [
    (f'sum by (stage) (rate(facestream_batch_size_sum{{{S}}}[1m])) / sum by (stage) (rate(facestream_batch_size_count{{{S}}}[1m]))', "{{stage}} mean"),
    (f'histogram_quantile(0.95, sum by (le, stage) (rate(facestream_batch_size_bucket{{{S}}}[1m])))', "{{stage}} p95")], "short", 0,
   desc="facestream_batch_size: messages per handled batch (bounded by FACESTREAM_KAFKA_MAX_BATCH).")
ts("Event-loop lag by process", [('max by (service, instance) (facestream_loop_lag_seconds)', "{{service}} {{instance}}")], "s", 12,
   desc="facestream_loop_lag_seconds: how late a 0.25 s timer fired; a blocked loop shows here first.")
nl()
row("Kafka consumer lag (kafka-exporter, Apache Kafka only)")
ts("Consumer lag by stage group", [('sum by (consumergroup) (kafka_consumergroup_lag{consumergroup=~"$prefix.*"})', "{{consumergroup}}")], "short", 0,
   desc="kafka_consumergroup_lag from kafka-exporter: messages not yet committed by each stage's consumer group. "
        "The embedded Tansu broker misreports end offsets: use `facestream ops status` there, which says so.")
ts("Consumer lag by partition", [('sum by (consumergroup, topic, partition) (kafka_consumergroup_lag{consumergroup=~"$prefix.*"})', "{{consumergroup}} {{topic}}[{{partition}}]")], "short", 12,
   desc="A partition whose lag grows while others stay flat is a hot key (camera) or a stuck worker; "
        "partitions per topic cap a stage's replicas.")
nl()
row("Face plug-ins")
ts("Plug-in faces / s by outcome", [('sum by (plugin, outcome) (rate(facestream_plugin_faces_total[5m]))', "{{plugin}} {{outcome}}")], "ops", 0,
   desc="facestream_plugin_faces_total: faces each face plug-in processed, skipped (preprocess wanted nothing) or failed (dead-lettered).")
ts("Plug-in extras asked for but not computed", [('sum by (plugin, extra) (increase(facestream_plugin_extras_missing_total[15m]))', "{{plugin}} {{extra}}")], "short", 12,
   desc="facestream_plugin_extras_missing_total: extras a plug-in requested that the pipeline does not compute (switch on the model: models.attributes, models.event_liveness).")
nl()
row("Query API")
ts("API requests / s by route and status", [('sum by (route, status) (rate(facestream_api_requests_total[1m]))', "{{route}} {{status}}")], "reqps", 0,
   desc="facestream_api_requests_total: requests answered by the query API.")
ts("API request time p95 by route", [('histogram_quantile(0.95, sum by (le, route) (rate(facestream_api_request_seconds_bucket[1m])))', "{{route}}")], "s", 12,
   desc="facestream_api_request_seconds: time to answer (detect/verify/search include inference).")
nl()
dash = {
    "uid": "facestream", "title": "facestream", "tags": ["facestream", "kafka"], "timezone": "browser",
    "schemaVersion": 39, "version": 1, "refresh": "10s", "editable": True,
    "time": {"from": "now-30m", "to": "now"},
    "description": "facestream pipeline: per-stage rates, errors, batch sizes, latency, loop lag and consumer lag. "
                   "Metric names: docs/observability.md.",
    "templating": {"list": [
        {"name": "datasource", "type": "datasource", "query": "prometheus", "label": "Data source",
         "current": {"text": "Prometheus", "value": "prometheus"}},
        {"name": "stage", "type": "query", "label": "Stage", "datasource": {"type": "prometheus", "uid": P},
         "query": {"query": "label_values(facestream_messages_in_total, stage)", "refId": "stage"},
         "definition": "label_values(facestream_messages_in_total, stage)",
         "includeAll": True, "multi": True, "allValue": ".*", "refresh": 2,
         "current": {"text": "All", "value": "$__all"}},
        {"name": "prefix", "type": "constant", "label": "Topic prefix", "query": "facestream\\.", "hide": 2},
    ]},
    "annotations": {"list": []},
    "panels": panels,
}
OUT.write_text(json.dumps(dash, indent=2) + "\n")
print(f"wrote {OUT} ({len(panels)} panels)")
