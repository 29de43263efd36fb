"""Two redundant features (seed 002): an 8x8 digit and a class-correlated random pattern, one label.

Seed 002's image task combines two labelled datasets with labels 0-9 so that either feature alone
classifies the image: the "number" (the shape of a digit) and the "pattern" (a random binary
image, one of a few per class, to be memorised). The seed sees a network learn both at comparable
rates. Here the digits are scikit-learn's bundled 8x8 digits (1797 images, pixels 0..16, shipped
in the wheel: no download) and the patterns are `10 * patterns_per_class` random binary 8x8
images drawn from task.data_seed, pattern j belonging to class j mod 10. An image of class c is

    both:         (1 - opacity) * digit / 16 + opacity * pattern     (pattern: one of class c's, noisy)
    digit only:   (1 - opacity) * digit / 16
    pattern only:                              opacity * pattern

where "noisy" flips each pattern pixel with probability `pattern_noise` (a fresh draw per image).
Training images are "both", except shares `digit_only` and `pattern_only` of them. Every test
image is evaluated three ways, as the loss components `both`, `digit` and `pattern`, so the
trainer logs test_acc/digit and test_acc/pattern: how far each feature alone is read. Inputs are
64 real-valued features (TaskShape.d_vocab = 0), which the MLP family reads.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from grokscope.config import ConfigError, TaskShape
from grokscope.tasks.examples import Examples, ExampleTask, check_table, rng

N_IMAGES = 1797  # sklearn.datasets.load_digits
N_PIXELS = 64
N_CLASSES = 10
FEATURES = ("both", "digit", "pattern")
STREAM = {"patterns": 9, "kind": 10, "choice": 11, "noise_train": 12, "noise_test": 13}


@dataclass(frozen=True)
class TwoFeatureDigitsConfig:
    """8x8 digits overlaid with class-correlated random patterns (grokscope.tasks.two_feature_digits)."""

    name: str = "two_feature_digits"
    frac_train: float = 0.5  # share of the 1797 digit images used for training
    opacity: float = 0.5  # the pattern's weight in an image; the digit's is 1 - opacity (seed 002: 0.5)
    patterns_per_class: int = 1  # random patterns per class (more: more to memorise)
    pattern_noise: float = 0.05  # chance that a pattern pixel flips, drawn afresh per image
    digit_only: float = 0.1  # share of training images that show the digit only
    pattern_only: float = 0.1  # share of training images that show the pattern only
    data_seed: int = 0  # fixes the split, the patterns and the noise

    def check(self) -> None:
        check_table(self)
        if not 0.0 < self.opacity < 1.0:
            raise ConfigError("task.opacity", f"must be in (0, 1) (got {self.opacity})")
        if not 1 <= self.patterns_per_class <= 100:
            raise ConfigError("task.patterns_per_class", f"must be an integer in 1..100 (got {self.patterns_per_class})")
        if not 0.0 <= self.pattern_noise < 0.5:
            raise ConfigError("task.pattern_noise", f"must be in [0, 0.5) (got {self.pattern_noise})")
        for key in ("digit_only", "pattern_only"):
            if not 0.0 <= getattr(self, key) <= 1.0:
                raise ConfigError(f"task.{key}", f"must be in [0, 1] (got {getattr(self, key)})")
        if self.digit_only + self.pattern_only > 1.0:
            raise ConfigError("task.pattern_only", f"task.digit_only + task.pattern_only must be <= 1 "
                              f"(got {self.digit_only} + {self.pattern_only})")

    def label(self) -> str:
        return f"digits{self.opacity:g}"

    def title(self) -> str:
        return f"two-feature digits, opacity {self.opacity:g}"

    def shape(self) -> TaskShape:
        return TaskShape(0, N_CLASSES, N_PIXELS, max(1, round(self.frac_train * N_IMAGES)))


def load_digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 8x8 digits: images [1797, 64] in [0, 1] (float32) and labels [1797]."""
    try:
        from sklearn.datasets import load_digits as sk_load
    except ImportError:
        raise ConfigError("task.name", "two_feature_digits needs scikit-learn: pip install 'grokscope[digits]'") from None
    data = sk_load()
    images, labels = np.asarray(data.data, dtype=np.float32) / 16.0, np.asarray(data.target, dtype=np.int64)
    if images.shape != (N_IMAGES, N_PIXELS):
        raise ConfigError("task.name", f"scikit-learn's digits have shape {images.shape}, not ({N_IMAGES}, {N_PIXELS})")
    return images, labels


class TwoFeatureDigitsTask(ExampleTask):
    name = "two_feature_digits"
    components = FEATURES
    table_size = N_IMAGES

    def _setup(self) -> None:
        cfg, seed = self.cfg, self.cfg.data_seed
        self.images, self.labels = load_digits()
        self.patterns = rng(seed, STREAM["patterns"]).integers(0, 2, size=(N_CLASSES * cfg.patterns_per_class, N_PIXELS))
        # which of its class's patterns each image carries, and its training kind: a pure function of the image
        self.choice = self.labels + N_CLASSES * rng(seed, STREAM["choice"]).integers(0, cfg.patterns_per_class, N_IMAGES)
        u = rng(seed, STREAM["kind"]).random(N_IMAGES)
        self.kind = np.where(u < cfg.digit_only, 1, np.where(u < cfg.digit_only + cfg.pattern_only, 2, 0))

    @property
    def d_vocab(self) -> int:
        return 0

    @property
    def d_vocab_out(self) -> int:
        return N_CLASSES

    @property
    def n_ctx(self) -> int:
        return N_PIXELS

    @property
    def target_positions(self) -> tuple[int, ...]:
        return (N_PIXELS - 1,)  # one answer per image (the MLP's single output position)

    def _pattern(self, index: np.ndarray, stream: int) -> np.ndarray:
        """[n, 64] the images' patterns with seeded pixel flips (0/1 floats)."""
        clean = self.patterns[self.choice[index]]
        flips = rng(self.cfg.data_seed, stream).random((N_IMAGES, N_PIXELS))[index] < self.cfg.pattern_noise
        return (clean ^ flips).astype(np.float32)

    def _compose(self, index: np.ndarray, kind: np.ndarray, stream: int) -> Examples:
        op = np.float32(self.cfg.opacity)
        digit, pattern = (1 - op) * self.images[index], op * self._pattern(index, stream)
        show_digit, show_pattern = (kind != 2)[:, None], (kind != 1)[:, None]
        inputs = np.where(show_digit, digit, 0) + np.where(show_pattern, pattern, 0)
        return Examples(inputs.astype(np.float32), self.labels[index][:, None], kind[:, None].astype(np.int64))

    def rows(self, index: np.ndarray) -> Examples:
        return self._compose(index, self.kind[index], STREAM["noise_train"])

    def test_rows(self, index: np.ndarray) -> Examples:
        """Every test image three times: both features, the digit only, the pattern only."""
        index = np.asarray(index)
        n = len(index)
        return self._compose(np.tile(index, 3), np.repeat(np.arange(3), n), STREAM["noise_test"])

    def describe(self) -> dict:
        cfg = self.cfg
        return {**super().describe(), "images": f"{self.n_train} training of {N_IMAGES} (scikit-learn digits)",
                "opacity": cfg.opacity, "patterns": N_CLASSES * cfg.patterns_per_class, "pattern_noise": cfg.pattern_noise,
                "training mix": f"{1 - cfg.digit_only - cfg.pattern_only:.0%} both, {cfg.digit_only:.0%} digit only, "
                                f"{cfg.pattern_only:.0%} pattern only",
                "test sets": "both, digit only, pattern only (each test image three ways)"}
