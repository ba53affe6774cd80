"""Prometheus metrics of one worker process. Each Worker gets its own registry, so
several workers in one test process do not share counters.

Detection metrics carry the model's name and version as labels (``model``,
``version``), so a canary and the default compare side by side on a dashboard."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

_AGE_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.35, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0)
_INFERENCE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56)
_BATCH_BUCKETS = (1, 2, 4, 8, 12, 16, 24, 32, 48, 64, 128, 256)
_SWAP_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0)
# The labels that tell model versions apart.
MODEL_LABELS = ("model", "version")


class WorkerMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.frames_received = Counter(
            "memelearning_worker_frames_received", "Frames delivered to this worker", registry=r
        )
        self.frames_processed = Counter(
            "memelearning_worker_frames_processed",
            "Frames run through the model whose events were confirmed and which were acked",
            registry=r,
        )
        self.frames_stale = Counter(
            "memelearning_worker_frames_stale",
            "Frames acked without inference because they were older than the stale budget",
            registry=r,
        )
        self.frames_rejected = Counter(
            "memelearning_worker_frames_rejected",
            "Frames sent to the dead-letter queue, by reason",
            ["reason"],
            registry=r,
        )
        self.frames_requeued = Counter(
            "memelearning_worker_frames_requeued",
            "Frames given back to the queue (event publish failed, inference failed)",
            ["reason"],
            registry=r,
        )
        self.frames_lost_in_queue = Counter(
            "memelearning_worker_frames_lost_in_queue",
            "Frames the queue dropped before any worker took them (expired, maxlen)",
            ["reason"],
            registry=r,
        )
        self.batch_size = Histogram(
            "memelearning_worker_batch_size",
            "Frames per model call",
            MODEL_LABELS,
            buckets=_BATCH_BUCKETS,
            registry=r,
        )
        self.frame_age_at_pickup = Histogram(
            "memelearning_worker_frame_age_at_pickup_seconds",
            "Capture to the start of processing: time in the queue and in the batcher",
            buckets=_AGE_BUCKETS,
            registry=r,
        )
        self.frame_age_at_event = Histogram(
            "memelearning_worker_frame_age_at_event_seconds",
            "Capture to the reaction event being confirmed by the broker",
            MODEL_LABELS,
            buckets=_AGE_BUCKETS,
            registry=r,
        )
        self.inference_seconds = Histogram(
            "memelearning_worker_inference_seconds",
            "Wall time of one model call (one batch)",
            MODEL_LABELS,
            buckets=_INFERENCE_BUCKETS,
            registry=r,
        )
        self.decode_seconds = Histogram(
            "memelearning_worker_decode_seconds",
            "Wall time to decode one batch of JPEGs",
            buckets=_INFERENCE_BUCKETS,
            registry=r,
        )
        self.events_published = Counter(
            "memelearning_worker_events_published",
            "Reaction events confirmed by the broker, by label and model version",
            ["label", *MODEL_LABELS],
            registry=r,
        )
        self.in_flight = Gauge(
            "memelearning_worker_frames_in_flight",
            "Frames delivered to this worker and not yet settled",
            registry=r,
        )
        self.ready = Gauge(
            "memelearning_worker_ready", "1 once the model is warm and consuming", registry=r
        )
        self.model = Info(
            "memelearning_worker_model",
            "The model version this worker serves by default",
            registry=r,
        )
        self.frames_detected = Counter(
            "memelearning_worker_frames_detected",
            "Frames run through the model, by model version",
            MODEL_LABELS,
            registry=r,
        )
        self.model_share = Gauge(
            "memelearning_worker_model_share",
            "Percent of participants each serving model version serves (a canary: below 100)",
            MODEL_LABELS,
            registry=r,
        )
        self.models_loaded = Gauge(
            "memelearning_worker_models_loaded",
            "Model versions loaded (at most two: the serving one and the one swapping in)",
            registry=r,
        )
        self.model_swaps = Counter(
            "memelearning_worker_model_swaps",
            "Changes of what serves that were carried out (a new default, a canary, a share)",
            registry=r,
        )
        self.model_swap_seconds = Histogram(
            "memelearning_worker_model_swap_seconds",
            "From the request (control message, poll) to serving the change, load and "
            "warm-up included (unloading the old version comes after)",
            buckets=_SWAP_BUCKETS,
            registry=r,
        )
        self.model_refused = Counter(
            "memelearning_worker_model_refused",
            "Model versions refused while running (the serving one kept serving), by reason",
            ["reason"],
            registry=r,
        )
