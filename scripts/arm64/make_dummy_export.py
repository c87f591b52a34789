"""Write a throwaway encoder.onnx/decoder.onnx pair with the InterFormer graph signature (host side, needs torch).

Only for exercising ``run.sh``'s benchmark step before a real ``interformer-export`` folder exists::

    /work/venv/bin/python scripts/arm64/make_dummy_export.py /var/tmp/interformer-dummy-export
    ARTIFACTS=/var/tmp/interformer-dummy-export make test-arm64

Signature (as in export/onnx.py): encoder ``image (1,3,H,W)`` → ``feat0..feat3`` at strides 4/8/16/32;
decoder ``feat0..feat3, ref_label (1,1,H,W) uint8, roi (1,4) int64`` → ``logits (1,2,H,W)``; H and W
dynamic. The weights are random: the numbers it produces mean nothing. Never put its output in git.
"""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import torch
from torch import nn

CHANNELS = (32, 64, 128, 256)


class Encoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, CHANNELS[0], 4, stride=4)
        self.downs = nn.ModuleList(nn.Conv2d(a, b, 2, stride=2) for a, b in itertools.pairwise(CHANNELS))

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        feats = [torch.relu(self.stem(image))]
        for down in self.downs:
            feats.append(torch.relu(down(feats[-1])))
        return tuple(feats)


class Decoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lateral = nn.ModuleList(nn.Conv2d(c, 32, 1) for c in CHANNELS)
        self.label = nn.Conv2d(1, 32, 3, padding=1)
        self.head = nn.Conv2d(32, 2, 3, padding=1)

    def forward(self, f0, f1, f2, f3, ref_label, roi):
        size = ref_label.shape[-2:]
        x = self.label(ref_label.float() / 4.0)
        for lateral, feat in zip(self.lateral, (f0, f1, f2, f3), strict=True):
            x = x + nn.functional.interpolate(lateral(feat), size=size, mode="bilinear", align_corners=False)
        return self.head(torch.relu(x)) + (roi.float().sum() * 0.0)


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__)
        return 2
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    encoder, decoder = Encoder().eval(), Decoder().eval()
    image = torch.randn(1, 3, 320, 480)
    with torch.no_grad():
        feats = encoder(image)
    ref_label = torch.randint(0, 5, (1, 1, 320, 480), dtype=torch.uint8)
    roi = torch.tensor([[0, 0, 480, 320]], dtype=torch.int64)
    feat_names = [f"feat{i}" for i in range(4)]
    feat_axes = {n: {2: f"H/{s}", 3: f"W/{s}"} for n, s in zip(feat_names, (4, 8, 16, 32), strict=True)}
    common = {"dynamo": False, "opset_version": 17}
    torch.onnx.export(
        encoder,
        (image,),
        str(out / "encoder.onnx"),
        input_names=["image"],
        output_names=feat_names,
        dynamic_axes={"image": {2: "H", 3: "W"}, **feat_axes},
        **common,
    )
    torch.onnx.export(
        decoder,
        (*feats, ref_label, roi),
        str(out / "decoder.onnx"),
        input_names=[*feat_names, "ref_label", "roi"],
        output_names=["logits"],
        dynamic_axes={**feat_axes, "ref_label": {2: "H", 3: "W"}, "logits": {2: "H", 3: "W"}},
        **common,
    )
    print(f"wrote {out / 'encoder.onnx'} and {out / 'decoder.onnx'} (random weights, throwaway)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
