"""Key-frame policies: which onset, apex and offset frames the flow of a clip is taken from.

The CausalNet paper (Zhang, Tang & Chen, ICCV 2025, arXiv 2508.06640; code:
github.com/tony19980810/CausalNet) measures how recognition degrades when the annotated
key frames are wrong. It perturbs the annotated indices with Gaussian noise of a given
standard deviation (in frames) but does not say how a perturbed index that leaves the
clip or crosses another key frame is handled; :class:`Noise` states the rule used here.
A third policy replaces the annotated apex by one spotted from the aligned frames
(:mod:`mefeat.keyframes.spotting`).

Every policy is a small frozen record with

- ``name``: the variant name of the features it makes (``gt``, ``noise-std10-s0``, ...),
- ``spec``: the string :func:`parse_policy` reads back into an equal policy,
- ``params``: a JSON-able dict for the store's attributes,
- ``apply(key, n_frames, gt, frames) -> KeyFrames``;

and its class is registered (:func:`register_policy`) under the first word of its spec with
``parse(args)`` (the spec's other ``:``-separated words), a one-line ``help`` and the
``columns`` it adds to the robustness benchmark (:class:`BenchColumn`). A new policy is one
new class: ``parse_policy``, the CLI's help and the bench's conditions follow the registry.

Indices are 0-based positions in a clip's frame list, not the datasets' frame numbers.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple, Protocol, runtime_checkable

import numpy as np

from mefeat.errors import MefeatError, SampleError
from mefeat.frames import check_keyframes

KEY_NAMES: tuple[str, str, str] = ("onset", "apex", "offset")


class KeyFrames(NamedTuple):
    """Onset, apex and offset of a clip as 0-based indices into its frame list."""

    onset: int
    apex: int
    offset: int

    def check(self, n_frames: int, key: str = "<sample>") -> None:
        """Raise :class:`SampleError` unless the key frames fit the clip in order
        (see :func:`mefeat.frames.check_keyframes`: an apex may equal the offset)."""
        check_keyframes(key, n_frames, self.onset, self.apex, self.offset)


@runtime_checkable
class Policy(Protocol):
    """What every key-frame policy offers (see the module docstring)."""

    @property
    def name(self) -> str: ...

    @property
    def spec(self) -> str: ...

    @property
    def params(self) -> dict[str, Any]: ...

    def apply(
        self, key: str, n_frames: int, gt: KeyFrames, frames: np.ndarray | None = None
    ) -> KeyFrames: ...


def stable_hash(key: str) -> int:
    """A hash of a sample key that is the same in every process and Python version.

    Python's ``hash()`` of a string is salted per process, so it cannot seed anything
    that must repeat; CRC-32 of the UTF-8 bytes can.
    """
    return zlib.crc32(key.encode("utf-8"))


def _number(x: float) -> str:
    """Shortest text of ``x`` that reads back to the same float (``10``, ``2.5``)."""
    text = f"{x:g}"
    return text if float(text) == x else repr(x)


def _as_keyframes(gt: KeyFrames | tuple[int, int, int]) -> KeyFrames:
    return gt if isinstance(gt, KeyFrames) else KeyFrames(*(int(i) for i in gt))


@dataclass(frozen=True)
class BenchColumn:
    """A column of the robustness benchmark (the CausalNet supplement's Table 4).

    ``spec(run, spot_method)`` is the key-frame policy of that column in run ``run``;
    ``error_std`` places it on the robustness plot's x axis (key-frame error STD, frames);
    ``None`` draws it as a marker after the noisy columns.
    """

    name: str
    label: str
    error_std: float | None
    spec: Callable[[int, str], str]


POLICIES: dict[str, type] = {}


def register_policy(cls: type) -> type:
    """Register a key-frame policy class under its ``kind`` (its spec's first word)."""
    POLICIES[cls.kind] = cls
    return cls


def bench_columns() -> dict[str, BenchColumn]:
    """Every policy's bench columns, by name (``gt``, ``std10``, ..., ``spot``)."""
    return {c.name: c for cls in POLICIES.values() for c in cls.columns}


def policy_help() -> str:
    """How every registered policy is written (for ``--help`` texts and errors)."""
    return "; ".join(cls.help for cls in POLICIES.values())


@register_policy
@dataclass(frozen=True)
class GroundTruth:
    """The annotated key frames, unchanged (after checking that they fit the clip)."""

    kind: ClassVar[str] = "gt"
    help: ClassVar[str] = "gt (the annotated key frames)"
    columns: ClassVar[tuple[BenchColumn, ...]] = (
        BenchColumn("gt", "GT", 0.0, lambda run, spot: "gt"),)

    @classmethod
    def parse(cls, args: list[str]) -> GroundTruth:
        if args:
            raise ValueError("gt takes no arguments")
        return cls()

    @property
    def name(self) -> str:
        return "gt"

    @property
    def spec(self) -> str:
        return "gt"

    @property
    def params(self) -> dict[str, Any]:
        return {"policy": "gt"}

    def apply(
        self, key: str, n_frames: int, gt: KeyFrames, frames: np.ndarray | None = None
    ) -> KeyFrames:
        gt = _as_keyframes(gt)
        gt.check(n_frames, key)
        return gt


def _noise_column(std: int) -> BenchColumn:
    # Run r draws with noise seed r: three runs are three independent draws of the errors.
    return BenchColumn(f"std{std}", f"STD={std}", float(std),
                       lambda run, spot, std=std: f"noise:{std}:{run}")


@register_policy
@dataclass(frozen=True)
class Noise:
    """Annotated key frames moved by rounded Gaussian errors, reproducibly per sample.

    Rule (version 1), for a clip of ``n`` frames and annotated ``(o, a, f)`` with
    ``0 <= o < a < f < n`` (so ``n >= 3``; anything else raises :class:`SampleError`):

    1. Draw three errors ``(e_o, e_a, e_f) ~ N(0, std**2)`` i.i.d. from
       ``numpy.random.default_rng([seed, zlib.crc32(key.encode("utf-8"))])``, always in
       the order onset, apex, offset and always all three, so a sample's apex error is
       the same whether or not onset and offset move too, and no sample's draw depends on
       any other sample or on the order of the samples. Round each to the nearest integer
       (``numpy.rint``: halves to even). Errors of indices not in ``move`` are set to 0.
    2. Onset first: ``o' = clip(o + e_o, 0, n - 3)`` (room for an apex and an offset
       after it).
    3. Offset next: ``f' = clip(f + e_f, o' + 2, n - 1)`` (room for an apex between).
    4. Apex last: ``a' = clip(a + e_a, o' + 1, f' - 1)``.

    Here ``clip(x, lo, hi) = min(max(x, lo), hi)``. Hence ``0 <= o' < a' < f' <= n - 1``
    always; an index that would leave the clip or cross another key frame is pushed to
    the nearest allowed position (it piles up at the limit rather than being redrawn);
    when onset and offset collide the onset wins; a key frame not in ``move`` stays put
    unless a moved one pushes it. With ``std = 0`` the annotation is returned unchanged,
    since a valid annotation already satisfies every bound above. With the default
    ``move=("apex",)`` only step 4 changes anything: the apex is kept strictly between
    the annotated onset and offset.

    Args:
        std: standard deviation of the error in frames, ``>= 0``.
        seed: non-negative integer; with the sample key it fixes the draw.
        move: which key frames receive an error: ``("apex",)`` (the default, spec
            ``noise:STD:SEED``), all three (``noise:STD:SEED:all``) or any other subset.
    """

    std: float
    seed: int = 0
    move: tuple[str, ...] = ("apex",)

    kind: ClassVar[str] = "noise"
    help: ClassVar[str] = ("noise:STD:SEED (the apex moves), noise:STD:SEED:all (onset, apex "
                           "and offset move)")
    columns: ClassVar[tuple[BenchColumn, ...]] = tuple(_noise_column(s) for s in (10, 20, 30))

    @classmethod
    def parse(cls, args: list[str]) -> Noise:
        if len(args) not in (2, 3):
            raise ValueError("noise takes STD:SEED[:WHICH]")
        try:
            std, seed = float(args[0]), int(args[1])
        except ValueError:
            raise ValueError("STD must be a number and SEED an integer") from None
        which = args[2].strip().lower() if len(args) == 3 else "apex"
        move = KEY_NAMES if which == "all" else tuple(w.strip() for w in which.split("+"))
        try:
            return cls(std, seed, move=move)
        except MefeatError as exc:
            raise ValueError(str(exc)) from None

    def __post_init__(self) -> None:
        if not (math.isfinite(self.std) and self.std >= 0):
            raise MefeatError(f"noise policy: std must be a finite number >= 0, got {self.std}")
        integer = isinstance(self.seed, int | np.integer) and not isinstance(self.seed, bool)
        if not integer or self.seed < 0:
            raise MefeatError(f"noise policy: seed must be an integer >= 0, got {self.seed!r}")
        move = tuple(self.move)
        if not move or any(m not in KEY_NAMES for m in move):
            raise MefeatError(
                f"noise policy: move must name some of {KEY_NAMES}, got {self.move!r}"
            )
        # Canonical order, so equal policies compare and name equal.
        object.__setattr__(self, "move", tuple(m for m in KEY_NAMES if m in move))
        object.__setattr__(self, "std", float(self.std))
        object.__setattr__(self, "seed", int(self.seed))

    @property
    def _move_tag(self) -> str:
        if self.move == ("apex",):
            return ""
        if self.move == KEY_NAMES:
            return "all"
        return "+".join(self.move)

    @property
    def name(self) -> str:
        tag = self._move_tag.replace("+", "-")
        return f"noise-std{_number(self.std)}-s{self.seed}" + (f"-{tag}" if tag else "")

    @property
    def spec(self) -> str:
        tag = self._move_tag
        return f"noise:{_number(self.std)}:{self.seed}" + (f":{tag}" if tag else "")

    @property
    def params(self) -> dict[str, Any]:
        return {
            "policy": "noise",
            "std": self.std,
            "seed": self.seed,
            "move": list(self.move),
            "rule": "v1: rint(N(0,std^2)) from default_rng([seed, crc32(key)]); "
            "onset clip [0,n-3], offset clip [onset+2,n-1], apex clip [onset+1,offset-1]",
        }

    def errors(self, key: str) -> np.ndarray:
        """The rounded errors (onset, apex, offset) drawn for ``key``, before clipping,
        with zeros for key frames that do not move."""
        rng = np.random.default_rng([self.seed, stable_hash(key)])
        err = np.rint(rng.normal(0.0, self.std, size=3)).astype(np.int64)
        for i, m in enumerate(KEY_NAMES):
            if m not in self.move:
                err[i] = 0
        return err

    def apply(
        self, key: str, n_frames: int, gt: KeyFrames, frames: np.ndarray | None = None
    ) -> KeyFrames:
        gt = _as_keyframes(gt)
        gt.check(n_frames, key)
        if n_frames < 3:
            raise SampleError(key, f"{n_frames} frames cannot hold three distinct key frames")
        e_on, e_ap, e_off = (int(e) for e in self.errors(key))
        onset = min(max(gt.onset + e_on, 0), n_frames - 3)
        offset = min(max(gt.offset + e_off, onset + 2), n_frames - 1)
        apex = min(max(gt.apex + e_ap, onset + 1), offset - 1)
        return KeyFrames(onset, apex, offset)


@register_policy
@dataclass(frozen=True)
class Spot:
    """Annotated onset and offset; the apex spotted from the aligned frames between them.

    ``method`` is one of :data:`mefeat.keyframes.spotting.SPOT_METHODS` (``flowpeak``,
    ``featdiff``). The frames passed to :meth:`apply` are the clip's aligned grayscale
    frames ``(T, H, W)`` uint8.
    """

    method: str

    kind: ClassVar[str] = "spot"
    help: ClassVar[str] = "spot:METHOD (the apex spotted: spot:flowpeak, spot:featdiff)"
    columns: ClassVar[tuple[BenchColumn, ...]] = (
        BenchColumn("spot", "Spotting", None, lambda run, spot: f"spot:{spot}"),)

    @classmethod
    def parse(cls, args: list[str]) -> Spot:
        if len(args) != 1:
            raise ValueError("spot takes one METHOD")
        try:
            return cls(args[0].strip().lower())
        except MefeatError as exc:
            raise ValueError(str(exc)) from None

    def __post_init__(self) -> None:
        from .spotting import SPOT_METHODS

        if self.method not in SPOT_METHODS:
            raise MefeatError(
                f"unknown apex spotting method {self.method!r}; choose one of "
                f"{sorted(SPOT_METHODS)}"
            )

    @property
    def name(self) -> str:
        return f"spot-{self.method}"

    @property
    def spec(self) -> str:
        return f"spot:{self.method}"

    @property
    def params(self) -> dict[str, Any]:
        from .spotting import SPOT_DEFAULTS

        return {"policy": "spot", "method": self.method,
                "settings": dict(SPOT_DEFAULTS[self.method])}

    def apply(
        self, key: str, n_frames: int, gt: KeyFrames, frames: np.ndarray | None = None
    ) -> KeyFrames:
        from .spotting import spot_apex

        gt = _as_keyframes(gt)
        gt.check(n_frames, key)
        if frames is None:
            raise SampleError(key, f"policy {self.spec} needs the clip's aligned frames")
        if len(frames) != n_frames:
            raise SampleError(
                key, f"policy {self.spec}: {len(frames)} frames given for a clip of {n_frames}"
            )
        if gt.offset - gt.onset < 2:
            # A valid annotation may have offset = onset + 1 (check_keyframes allows an apex
            # on the onset or offset); the spotter needs a frame strictly between them.
            raise SampleError(
                key,
                f"policy {self.spec}: onset={gt.onset} and offset={gt.offset} (indices) leave "
                "no frame between them to spot an apex in, so this sample is left out of "
                "this variant (its aligned frames and other variants are kept); use the gt "
                "or noise key-frame policy for it, or check its annotation",
            )
        apex = spot_apex(frames, gt.onset, gt.offset, self.method)
        return KeyFrames(gt.onset, apex, gt.offset)


def parse_policy(spec: str) -> Policy:
    """Read a policy from its spec (``gt``, ``noise:10:0``, ``noise:10:0:all``,
    ``spot:flowpeak``...): the first word names a registered policy, which parses the rest.

    ``noise:STD:SEED:WHICH`` also accepts ``apex`` or ``+``-joined key-frame names for
    ``WHICH`` (``noise:5:1:onset+offset``). Raises :class:`MefeatError` on anything else.
    """
    if not isinstance(spec, str):
        raise MefeatError(f"key-frame policy {spec!r} is not a string; policies are written "
                          f"{policy_help()}")
    kind, *args = spec.strip().split(":")
    cls = POLICIES.get(kind.strip().lower())
    if cls is None:
        raise MefeatError(f"unknown key-frame policy {spec!r}; policies are written "
                          f"{policy_help()}")
    try:
        return cls.parse(args)
    except ValueError as exc:
        raise MefeatError(f"key-frame policy {spec!r}: {exc}; policies are written "
                          f"{policy_help()}") from None
