"""How the two towers' outputs become the heads' input (profile key `fusion`).

concat (the paper): pooled text ⊕ pooled image → Linear(fusion_dim) + ReLU.
attention (the paper's future work, "beyond the simple concatenation"): the pooled caption
vector queries the image's patch states (multi-head cross-attention), so the caption decides
where in the image to look; the attended vector joins the two pooled vectors before the same
Linear + ReLU. It needs the image's patch states, which every tower here returns
(last_hidden_state: [B, tokens, D] for a ViT such as CLIP's, [B, C, H, W] for a CNN), and only the
pooled text vector, so a frozen text tower's cached features serve it as they serve concat."""

from __future__ import annotations

import torch
from torch import nn

FUSIONS = ("concat", "attention")
ATTENTION_HEADS = 4


def concat_fusion(text_dim: int, vision_dim: int, fusion_dim: int, dropout: float) -> nn.Sequential:
    # A bare Sequential, as before `fusion` existed: saved models keep their weight names.
    return nn.Sequential(nn.Linear(text_dim + vision_dim, fusion_dim), nn.ReLU(), nn.Dropout(dropout))


def patch_states(vision_outputs) -> torch.Tensor:
    """[B, tokens, D] from a tower's last hidden state (a CNN's feature map read as H x W tokens)."""
    hidden = vision_outputs.last_hidden_state
    return hidden.flatten(2).transpose(1, 2) if hidden.dim() == 4 else hidden


class CrossAttentionFusion(nn.Module):
    def __init__(self, text_dim: int, vision_dim: int, fusion_dim: int, dropout: float):
        super().__init__()
        if vision_dim % ATTENTION_HEADS:
            raise ValueError(
                f"fusion: attention splits the image width ({vision_dim}) over {ATTENTION_HEADS} heads; "
                "use a vision tower whose width divides by it, or fusion: concat"
            )
        self.query = nn.Linear(text_dim, vision_dim)
        self.attend = nn.MultiheadAttention(vision_dim, ATTENTION_HEADS, dropout=dropout, batch_first=True)
        self.norm = nn.LayerNorm(vision_dim)
        self.project = concat_fusion(text_dim, 2 * vision_dim, fusion_dim, dropout)

    def forward(self, text_vec: torch.Tensor, vision_vec: torch.Tensor, patches: torch.Tensor) -> torch.Tensor:
        patches = patches.to(text_vec.dtype)
        attended, _ = self.attend(self.query(text_vec).unsqueeze(1), patches, patches, need_weights=False)
        return self.project(torch.cat([text_vec, vision_vec, self.norm(attended.squeeze(1))], dim=-1))
