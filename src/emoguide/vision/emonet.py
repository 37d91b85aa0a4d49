"""EmoNet (Toisoul, Kossaifi, Bulat, Tzimiropoulos & Pantic, "Estimation of continuous valence and
arousal levels from faces in naturalistic conditions", Nature Machine Intelligence 3, 2021).

A face-alignment network (FAN: a stem, stacked hourglasses, 68 landmark heatmaps) whose features,
weighted by the summed heatmaps ("attention"), feed an emotion head: a 1x1 conv, `n_blocks` x
(ConvBlock + 2x2 max-pool), average pooling and two linear layers giving `n_expression` logits
followed by valence and arousal. Input: 256x256 RGB in [0, 1]. Valence and arousal come out on
[-1, 1] (AffectNet's scale), so emoguide uses them as they are (clipped to [-1, 1]).

The module and attribute names below follow the authors' reference implementation
(github.com/face-analysis/emonet, `emonet/models/emonet.py`) so that its published state dicts
(`emonet_5.pth`, `emonet_8.pth`) load key for key: `conv1, bn1, conv2..conv4, m{i}` (hourglass
`b1_{l}, b2_{l}, b2_plus_1, b3_{l}`), `top_m_{i}, conv_last{i}, bn_end{i}, l{i}, bl{i}, al{i}`,
`conv1x1_input_emo_2, emo_net_2.{2k}`, `emo_fc_2.{0,1,3}`. As in that code, every normalisation
layer is a BatchNorm2d (the reference aliases `nn.InstanceNorm2d = nn.BatchNorm2d`).

Widths are parameters here (the reference hard-codes 256 features, 68 heatmaps, 2 stacks, depth 4,
4 emotion blocks) so tests can build a tiny network of the same layout; `EmoNet.from_state_dict`
reads them back from a checkpoint's tensor shapes, so a loader needs no configuration.

The weights are CC BY-NC-ND (research use); they are never downloaded by emoguide: the user
supplies the `.pth` file.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

# Class order of the reference models (README of face-analysis/emonet).
EMONET_LABELS_8 = ("neutral", "happy", "sad", "surprise", "fear", "disgust", "angry", "contempt")
EMONET_LABELS_5 = ("neutral", "happy", "sad", "surprise", "fear")


def _conv3x3(cin: int, cout: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=3, stride=1, padding=1, bias=False)


class ConvBlock(nn.Module):
    """FAN's hierarchical, parallel multi-scale residual block (Bulat & Tzimiropoulos, 2017)."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = _conv3x3(cin, cout // 2)
        self.bn2 = nn.BatchNorm2d(cout // 2)
        self.conv2 = _conv3x3(cout // 2, cout // 4)
        self.bn3 = nn.BatchNorm2d(cout // 4)
        self.conv3 = _conv3x3(cout // 4, cout // 4)
        if cin != cout:
            self.downsample = nn.Sequential(
                nn.BatchNorm2d(cin), nn.ReLU(True), nn.Conv2d(cin, cout, kernel_size=1, stride=1, bias=False)
            )
        else:
            self.downsample = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out1 = self.conv1(F.relu(self.bn1(x), True))
        out2 = self.conv2(F.relu(self.bn2(out1), True))
        out3 = self.conv3(F.relu(self.bn3(out2), True))
        out = torch.cat((out1, out2, out3), 1)
        residual = x if self.downsample is None else self.downsample(x)
        return out + residual


class HourGlass(nn.Module):
    def __init__(self, depth: int, features: int):
        super().__init__()
        self.depth = depth
        self.features = features
        self._generate(depth)

    def _generate(self, level: int) -> None:
        f = self.features
        self.add_module(f"b1_{level}", ConvBlock(f, f))
        self.add_module(f"b2_{level}", ConvBlock(f, f))
        if level > 1:
            self._generate(level - 1)
        else:
            self.add_module(f"b2_plus_{level}", ConvBlock(f, f))
        self.add_module(f"b3_{level}", ConvBlock(f, f))

    def _forward(self, level: int, inp: torch.Tensor) -> torch.Tensor:
        up1 = self._modules[f"b1_{level}"](inp)
        low1 = self._modules[f"b2_{level}"](F.max_pool2d(inp, 2, stride=2))
        if level > 1:
            low2 = self._forward(level - 1, low1)
        else:
            low2 = self._modules[f"b2_plus_{level}"](low1)
        low3 = self._modules[f"b3_{level}"](low2)
        return up1 + F.interpolate(low3, scale_factor=2, mode="nearest")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._forward(self.depth, x)


@dataclass(frozen=True)
class EmoNetConfig:
    n_expression: int = 8
    n_reg: int = 2  # valence, arousal
    num_modules: int = 2  # stacked hourglasses
    depth: int = 4  # hourglass depth
    features: int = 256  # FAN width
    n_landmarks: int = 68
    n_blocks: int = 4  # emotion-head ConvBlocks (each followed by a 2x2 max-pool)
    attention: bool = True
    fc_hidden: int = 128

    @property
    def stem(self) -> tuple[int, int]:
        """Channels after conv1 and after conv2/conv3 (reference: 64, 128 for 256 features)."""
        return self.features // 4, self.features // 2


class EmoNet(nn.Module):
    """EmoNet with the reference module names. `forward` returns a dict like the reference:
    `heatmap`, `expression` (logits), `valence`, `arousal`."""

    def __init__(self, config: EmoNetConfig | None = None, **overrides: Any):
        super().__init__()
        cfg = config or EmoNetConfig()
        if overrides:
            cfg = EmoNetConfig(**{**asdict(cfg), **overrides})
        if cfg.features % 4 or (cfg.features // 2) % 4:
            raise ValueError("features must be a multiple of 8")
        self.config = cfg
        f = cfg.features
        c1, c2 = cfg.stem
        self.conv1 = nn.Conv2d(3, c1, kernel_size=7, stride=2, padding=3)
        self.bn1 = nn.BatchNorm2d(c1)
        self.conv2 = ConvBlock(c1, c2)
        self.conv3 = ConvBlock(c2, c2)
        self.conv4 = ConvBlock(c2, f)
        for i in range(cfg.num_modules):
            self.add_module(f"m{i}", HourGlass(cfg.depth, f))
            self.add_module(f"top_m_{i}", ConvBlock(f, f))
            self.add_module(f"conv_last{i}", nn.Conv2d(f, f, kernel_size=1, stride=1, padding=0))
            self.add_module(f"bn_end{i}", nn.BatchNorm2d(f))
            self.add_module(f"l{i}", nn.Conv2d(f, cfg.n_landmarks, kernel_size=1, stride=1, padding=0))
            if i < cfg.num_modules - 1:
                self.add_module(f"bl{i}", nn.Conv2d(f, f, kernel_size=1, stride=1, padding=0))
                self.add_module(f"al{i}", nn.Conv2d(cfg.n_landmarks, f, kernel_size=1, stride=1, padding=0))
        n_in = f * (cfg.num_modules + 1) + (0 if cfg.attention else cfg.n_landmarks)
        self.conv1x1_input_emo_2 = nn.Conv2d(n_in, f, kernel_size=1, stride=1, padding=0)
        convs: list[nn.Module] = []
        for _ in range(cfg.n_blocks):
            convs += [ConvBlock(f, f), nn.MaxPool2d(2, 2)]
        self.emo_net_2 = nn.Sequential(*convs)
        # Reference: nn.AvgPool2d(4) on the 4x4 map left from a 256x256 input; adaptive pooling
        # to 1x1 is the same there and lets smaller test inputs through. No parameters either way.
        self.avg_pool_2 = nn.AdaptiveAvgPool2d(1)
        self.emo_fc_2 = nn.Sequential(
            nn.Linear(f, cfg.fc_hidden),
            nn.BatchNorm1d(cfg.fc_hidden),
            nn.ReLU(inplace=True),
            nn.Linear(cfg.fc_hidden, cfg.n_expression + cfg.n_reg),
        )

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        cfg = self.config
        x = F.relu(self.bn1(self.conv1(x)), True)
        x = F.max_pool2d(self.conv2(x), 2, stride=2)
        x = self.conv3(x)
        x = self.conv4(x)
        previous = x
        hg_features = []
        tmp_out = None
        for i in range(cfg.num_modules):
            hg = self._modules[f"m{i}"](previous)
            ll = self._modules[f"top_m_{i}"](hg)
            ll = F.relu(self._modules[f"bn_end{i}"](self._modules[f"conv_last{i}"](ll)), True)
            tmp_out = self._modules[f"l{i}"](ll)
            if i < cfg.num_modules - 1:
                ll = self._modules[f"bl{i}"](ll)
                previous = previous + ll + self._modules[f"al{i}"](tmp_out)
            hg_features.append(ll)
        feats = torch.cat(tuple(hg_features), dim=1)
        if cfg.attention:
            feats = feats * torch.sum(tmp_out, dim=1, keepdim=True)
            emo_feat = torch.cat((x, feats), dim=1)
        else:
            emo_feat = torch.cat((x, feats, tmp_out), dim=1)
        out = self.emo_net_2(self.conv1x1_input_emo_2(emo_feat))
        out = self.avg_pool_2(out).flatten(1)
        out = self.emo_fc_2(out)
        return {
            "heatmap": tmp_out,
            "expression": out[:, : cfg.n_expression],
            "valence": out[:, -2],
            "arousal": out[:, -1],
        }

    # ------------------------------------------------------------------ checkpoints

    @staticmethod
    def config_from_state_dict(state: dict[str, torch.Tensor]) -> EmoNetConfig:
        """Read the layout back from tensor shapes (no configuration file needed)."""
        try:
            features = int(state["conv4.conv1.weight"].shape[0]) * 2
            n_out = int(state["emo_fc_2.3.weight"].shape[0])
            fc_hidden = int(state["emo_fc_2.0.weight"].shape[0])
            n_landmarks = int(state["l0.weight"].shape[0])
            n_in = int(state["conv1x1_input_emo_2.weight"].shape[1])
        except KeyError as exc:
            raise ValueError(f"not an EmoNet state dict: no {exc.args[0]!r}") from exc
        num_modules = 1 + max(int(m.group(1)) for k in state if (m := re.match(r"m(\d+)\.", k)))
        depth = max(int(m.group(1)) for k in state if (m := re.match(r"m0\.b1_(\d+)\.", k)))
        blocks = {int(m.group(1)) for k in state if (m := re.match(r"emo_net_2\.(\d+)\.", k))}
        n_blocks = len(blocks)
        attention = n_in == features * (num_modules + 1)
        return EmoNetConfig(
            n_expression=n_out - 2,
            n_reg=2,
            num_modules=num_modules,
            depth=depth,
            features=features,
            n_landmarks=n_landmarks,
            n_blocks=n_blocks,
            attention=attention,
            fc_hidden=fc_hidden,
        )


def clean_state_dict(obj: Any) -> dict[str, torch.Tensor]:
    """Unwrap `{'state_dict': ...}` / `{'model': ...}` checkpoints and strip `module.` (DataParallel)."""
    if isinstance(obj, dict):
        for key in ("state_dict", "model", "net"):
            if key in obj and isinstance(obj[key], dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict):
        raise ValueError(f"expected a state dict, got {type(obj).__name__}")
    return {str(k).removeprefix("module."): v for k, v in obj.items() if isinstance(v, torch.Tensor)}


def load_emonet(path: str | Path, map_location: str = "cpu") -> tuple[EmoNet, dict[str, Any]]:
    """Build an EmoNet whose layout matches the checkpoint at `path` and load it.

    Returns (model in eval mode, report) where the report lists unexpected keys. Missing keys other
    than BatchNorm's `num_batches_tracked` (absent from checkpoints of old torch versions) raise.
    """
    path = Path(path)
    raw = torch.load(str(path), map_location=map_location, weights_only=True)
    state = clean_state_dict(raw)
    config = EmoNet.config_from_state_dict(state)
    model = EmoNet(config)
    result = model.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if not k.endswith("num_batches_tracked")]
    if missing:
        raise ValueError(
            f"{path}: checkpoint lacks {len(missing)} EmoNet weights (e.g. {', '.join(missing[:5])})"
        )
    model.eval()
    report = {"config": asdict(config), "unexpected_keys": list(result.unexpected_keys)}
    return model, report
