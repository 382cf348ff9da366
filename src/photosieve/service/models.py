"""Which model this worker scores with: the registry's live version (and its shadow), switched
without a restart.

- At start-up `load_live_scorer` loads the registry's live bundle; on a fresh install (no live
  row) it loads the configured bundle and registers it as live (`adopt_bundle`: copied to
  `<workdir>/models/<version>/`). Once the registry has a live model it decides what is served;
  a configured bundle that differs is named in a warning, never served silently.
- `ModelSwitcher.refresh()` runs before every upload but reads the registry at most every
  `model_check_seconds` (one small indexed query); when the live or shadow version changed it
  loads the new bundle (sharing the worker's `Embedder` when the backbone is the same) and swaps
  the moderator's scorer under a lock — a request already scoring keeps the scorer it started
  with. A bundle that cannot be loaded is logged and the current model kept.
- `score_frames` scores an upload's frames with the live scorer and, when a shadow model is
  set, with the shadow too: one embedding, two heads when both use the same backbone (the
  shadow costs a head, not a second backbone pass). The shadow's score is recorded, never acted
  on, and a failing shadow never fails an upload.
"""

from __future__ import annotations

import json
import logging
import shutil
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from photosieve.bundle import ModelBundle
from photosieve.config import Workdir
from photosieve.scoring import Scorer, backbone_for
from photosieve.service.config import Settings
from photosieve.store import registry
from photosieve.store.db import begin_write
from photosieve.store.models import ModelStatus
from photosieve.vision.embed import Embedder

log = logging.getLogger(__name__)
STARTUP_ACTOR = "startup"


@dataclass(frozen=True)
class ShadowModel:
    """A model scoring uploads in shadow: its registry version and scorer."""

    version: str
    scorer: Any  # a `photosieve.scoring.Scorer` (or a test double with `score_images`)


def _embedder_of(scorer: Any) -> Any:
    return getattr(scorer, "embedder", None)


def scorer_for(bundle: ModelBundle, like: Any | None = None) -> Scorer:
    """A scorer for `bundle`, reusing `like`'s embedder when it is the bundle's backbone, else a
    new embedder with as many onnxruntime threads as `like`'s (the service's setting)."""
    embedder = _embedder_of(like)
    config = getattr(embedder, "config", None)
    if config is not None and config.id == bundle.backbone_id:
        return Scorer(bundle, embedder, _refine_embedder_for(bundle, like))
    threads = getattr(embedder, "threads", None)
    return Scorer(bundle, Embedder(backbone_for(bundle.backbone_id), threads=threads))


def _refine_embedder_for(bundle: ModelBundle, like: Any | None) -> Any:
    """`like`'s cascade embedder when it is `bundle`'s second backbone too, else None."""
    refine = getattr(like, "refine_embedder", None)
    config = getattr(refine, "config", None)
    if (
        bundle.refiner is not None
        and config is not None
        and config.id == bundle.refiner.backbone_id
    ):
        return refine
    return None


def version_of(scorer: Any) -> str:
    """The model version a scorer names ("" when it names none)."""
    return str(getattr(getattr(scorer, "bundle", None), "version", "") or "")


def adopt_bundle(sessions: sessionmaker[Session], bundle_dir: Path, workdir: Workdir) -> str:
    """Register the bundle at `bundle_dir` as live when the registry has no live model (a fresh
    install); returns the live version. Copied to `<workdir>/models/<version>/` first."""
    bundle = ModelBundle.load(bundle_dir)
    target = workdir.models / bundle.version
    if not target.exists():
        staging = workdir.models / f".adopt-{bundle.version}-{threading.get_ident()}"
        shutil.copytree(bundle_dir, staging, dirs_exist_ok=True)
        try:
            staging.rename(target)
        except OSError:  # another worker got there first
            shutil.rmtree(staging, ignore_errors=True)
    new = registry.NewModel(
        version=bundle.version,
        bundle_path=str(target),
        manifest_path=bundle.train_config.get("manifest"),
        data_fingerprint=bundle.data_fingerprint,
        evidence={"policy": bundle.policy.evidence if bundle.policy else None},
    )
    with sessions() as session:
        begin_write(session)
        live = registry.with_status(session, ModelStatus.LIVE)
        if live is not None:
            return live.version
        try:
            registry.register(session, new, actor=STARTUP_ACTOR, status=ModelStatus.LIVE)
            session.commit()
        except (IntegrityError, registry.RegistryError) as exc:
            # a worker starting beside this one registered it: at once (the unique key) or
            # after this one read "no live model" (`register` finds the row: `exists`)
            if isinstance(exc, registry.RegistryError) and exc.reason != "exists":
                raise
            session.rollback()
            with sessions() as again:
                other = registry.with_status(again, ModelStatus.LIVE)
                return other.version if other is not None else bundle.version
    return bundle.version


def live_bundle_path(sessions: sessionmaker[Session], settings: Settings) -> tuple[Path, str]:
    """The bundle folder to serve and its registry version: the registry's live model, or on a
    fresh install the configured bundle, registered live. ValueError when there is neither."""
    with sessions() as session:
        live = registry.with_status(session, ModelStatus.LIVE)
        if live is not None:
            return Path(live.bundle_path), live.version
    configured = settings.resolved_bundle_path
    if not (configured / "bundle.json").is_file():
        raise ValueError(
            f"no model bundle at {configured} and no live model in the registry; train one "
            "(`photosieve train` then `photosieve calibrate`) or point "
            "PHOTOSIEVE_BUNDLE_PATH / --bundle at one"
        )
    adopt_bundle(sessions, configured, Workdir(settings.workdir))
    return live_bundle_path(sessions, settings)


def load_live_scorer(sessions: sessionmaker[Session], settings: Settings) -> Scorer:
    """The registry's live model (see `live_bundle_path`), its onnxruntime on
    `settings.resolved_onnx_threads` threads."""
    path, live_version = live_bundle_path(sessions, settings)
    _warn_if_configured_differs(settings.resolved_bundle_path, live_version)
    bundle = ModelBundle.load(path)
    embedder = Embedder(backbone_for(bundle.backbone_id), threads=settings.resolved_onnx_threads)
    return Scorer(bundle, embedder)


def _warn_if_configured_differs(configured: Path, live_version: str) -> None:
    """The registry decides what is served; say so when the configured bundle is another."""
    meta = configured / "bundle.json"
    if not meta.is_file():
        return
    version = json.loads(meta.read_text()).get("version")
    if version and version != live_version:
        log.warning(
            "serving the registry's live model %s, not the configured bundle %s (version %s); "
            "register and promote it with `photosieve model`, or roll back",
            live_version, configured, version,
        )  # fmt: skip


class ModelSwitcher:
    """Keeps a worker's live and shadow scorers in step with the registry (see the module)."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        target: Any,
        *,
        check_seconds: float,
        on_switch: Callable[[Any], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.sessions = sessions
        self.target = target  # has `scorer` and `shadow` attributes (the Moderator)
        self.check_seconds = check_seconds
        self.on_switch = on_switch
        self.clock = clock
        self._lock = threading.Lock()
        self._checked: float | None = None
        # The registry versions last applied; None = the registry named none (keep the scorer).
        self.live_version: str | None = None
        self.shadow_version: str | None = None

    def refresh(self, *, force: bool = False) -> None:
        """Read the registry (at most every `check_seconds`) and switch if it changed."""
        now = self.clock()
        if not force and self._due(now) is False:
            return
        with self._lock:
            if not force and self._due(now) is False:
                return  # another thread checked while this one waited
            self._checked = now
            with self.sessions() as session:
                live, shadow = registry.active_versions(session)
                paths = {
                    v: registry.require(session, v).bundle_path
                    for v in (live, shadow)
                    if v is not None and v not in (self.live_version, self.shadow_version)
                }
            if live is not None and live != self.live_version:
                self._switch_live(live, paths.get(live))
            if shadow != self.shadow_version:
                self._switch_shadow(shadow, paths.get(shadow) if shadow else None)

    def _due(self, now: float) -> bool:
        return self._checked is None or now - self._checked >= self.check_seconds

    def _load(self, version: str, path: str | None) -> Scorer | None:
        current = self.target.scorer
        if version == version_of(current):
            return current
        try:
            if path is None:  # the previous shadow, now live: its bundle is loaded already
                shadow = self.target.shadow
                if shadow is not None and shadow.version == version:
                    return shadow.scorer
                raise ValueError(f"no bundle path for {version}")
            return scorer_for(ModelBundle.load(path), current)
        except (OSError, ValueError) as exc:
            log.error("cannot load model %s from %s: %s; keeping the current model",
                      version, path, exc)  # fmt: skip
            return None

    def _switch_live(self, version: str, path: str | None) -> None:
        scorer = self._load(version, path)
        if scorer is None:
            return
        self.target.scorer = scorer  # one attribute store: requests see the old or the new
        self.live_version = version
        if self.on_switch is not None:
            self.on_switch(scorer)
        log.info("now scoring with model %s", version)

    def _switch_shadow(self, version: str | None, path: str | None) -> None:
        if version is None:
            self.target.shadow = None
            self.shadow_version = None
            return
        scorer = self._load(version, path)
        if scorer is None:
            return
        self.target.shadow = ShadowModel(version, scorer)
        self.shadow_version = version


def _same_backbone(live: Any, shadow: Any) -> bool:
    """Whether one backbone pass serves both heads (never for a cascade: its second backbone
    embeds only the photos past its gate, inside `Scorer.score_images`)."""
    if any(getattr(s, "refine_embedder", None) is not None for s in (live, shadow)):
        return False
    a, b = _embedder_of(live), _embedder_of(shadow)
    return a is not None and b is not None and a.config.id == b.config.id


def _shadow_max(run: Callable[[], Sequence[Any]], version: str) -> float | None:
    try:
        return max(float(s.score) for s in run())
    except Exception:  # the shadow must never fail an upload
        log.exception("shadow model %s failed to score an upload", version)
        return None


def score_frames(
    live: Any, shadow: ShadowModel | None, frames: Sequence[Image.Image]
) -> tuple[Any, float | None]:
    """The live scorer's decision for the highest-scoring frame, and the shadow's highest
    score (None without a shadow, or when the shadow failed)."""
    if shadow is not None and _same_backbone(live, shadow.scorer):
        X = live.embedder.embed_images(frames)  # (F, D): one backbone pass for both heads
        scored = max(live.score_embeddings(X), key=lambda s: s.score)
        return scored, _shadow_max(lambda: shadow.scorer.score_embeddings(X), shadow.version)
    scored = max(live.score_images(frames), key=lambda s: s.score)
    if shadow is None:
        return scored, None
    return scored, _shadow_max(lambda: shadow.scorer.score_images(frames), shadow.version)
