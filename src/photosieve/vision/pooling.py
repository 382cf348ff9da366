"""How a backbone's final feature map becomes the embedding: the registered pooling variants.

- `avg`: the average over positions (1280-d), what the ImageNet classifier was trained on;
- `avgmax`: average then max pool (2560-d), so a small object lighting a few positions of the
  7×7 map is not diluted by the rest of the photo;
- `avgmax_gunmap`: avg+max plus a "gun map" (2570-d): the ImageNet classifier applied at every
  position of the map (it is linear, so the average of these per-position logits is the photo's
  own logits) for the firearm classes `GUN_CLASSES`, summarised per photo by the max and the
  top-`GUN_TOPK` mean over positions, per class and for the summed firearm probability (a
  softmax over all 1,000 classes at each position). A coarse "where is the gun" signal that an
  average pool dilutes (`bench/certified_workload.py` measures whether it helps).
"""

from __future__ import annotations

import torch
from torch import nn

HEAD_CHANNELS = 1280  # channels of the final feature map (and of the ImageNet classifier input)
# ImageNet-1k: 413 assault rifle, 597 holster, 763 revolver, 764 rifle.
GUN_CLASSES = (413, 597, 763, 764)
GUN_TOPK = 3  # positions averaged for the top-k summary (of 49 at 224 px, 81 at 260 px)
GUN_FEATURES = 2 * len(GUN_CLASSES) + 2  # max and top-k mean per class, and of P(firearm)
POOLINGS = {
    "avg": HEAD_CHANNELS,
    "avgmax": 2 * HEAD_CHANNELS,
    "avgmax_gunmap": 2 * HEAD_CHANNELS + GUN_FEATURES,
}


def gun_map(fmap: torch.Tensor, fc: nn.Linear) -> torch.Tensor:
    """(N, C, H, W) final map → (N, GUN_FEATURES): max and top-k mean of per-position gun logits.

    Columns: max logit per class (in `GUN_CLASSES` order), top-k mean logit per class, then the
    max and top-k mean over positions of the summed firearm probability.
    """
    logits = fc(fmap.flatten(2).transpose(1, 2))  # (N, H·W, 1000)
    guns = list(GUN_CLASSES)
    per_class = logits[:, :, guns]  # (N, P, 4)
    p_gun = torch.softmax(logits, dim=2)[:, :, guns].sum(dim=2, keepdim=True)  # (N, P, 1)
    k = min(GUN_TOPK, int(logits.shape[1]))
    summaries = []
    for values in (per_class, p_gun):
        summaries.append(values.amax(dim=1))
        summaries.append(values.topk(k, dim=1).values.mean(dim=1))
    maxes, tops, p_max, p_top = summaries
    return torch.cat([maxes, tops, p_max, p_top], dim=1)


def pool(fmap: torch.Tensor, pooling: str, fc: nn.Linear) -> torch.Tensor:
    """(N, 1280, H, W) final feature map → (N, POOLINGS[pooling]) embedding."""
    avg = fmap.mean(dim=(2, 3))
    if pooling == "avg":
        return avg
    avgmax = torch.cat([avg, fmap.amax(dim=(2, 3))], dim=1)
    if pooling == "avgmax":
        return avgmax
    return torch.cat([avgmax, gun_map(fmap, fc)], dim=1)
