"""The AstroMAE network: size, shapes, names, positions, and the MAE pretraining wrapper."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from cai_edge.models import AstroMAE, MaskedAutoencoder  # noqa: E402
from cai_edge.models.vit import sincos_position_embedding  # noqa: E402


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return AstroMAE().eval()


def test_parameter_count_matches_cai(model):
    assert sum(p.numel() for p in model.parameters()) == 15_801_513


def test_forward_returns_one_redshift_per_galaxy(model):
    with torch.no_grad():
        z = model(torch.randn(7, 5, 32, 32), torch.randn(7, 5) + 17)
    assert z.shape == (7,)
    assert torch.isfinite(z).all()


def test_state_dict_names_follow_timm_and_cai(model):
    names = set(model.state_dict())
    for name in [
        "patch_embed.proj.weight",
        "cls_token",
        "pos_embed",
        "blocks.0.norm1.weight",
        "blocks.11.attn.qkv.bias",
        "blocks.5.attn.proj.weight",
        "blocks.3.norm2.bias",
        "blocks.7.mlp.fc1.weight",
        "blocks.7.mlp.fc2.weight",
        "fc_norm.weight",
        "head.weight",
        "vit_block.0.weight",
        "vit_block.2.weight",
        "inception_model.vis_inception.0.weight",
        "inception_model.vis_inception.2.branch2.1.bn.running_var",
        "inception_model.vis_inception.8.branch4.1.conv.weight",
        "inception_model.vis_inception.12.weight",
        "inception_model.magnitude_block.0.weight",
        "inception_model.magnitude_block.8.weight",
        "concat_block.0.weight",
        "concat_block.2.bias",
    ]:
        assert name in names, name
    assert {n.split(".")[0] for n in names} == {
        "patch_embed", "cls_token", "pos_embed", "blocks", "fc_norm", "head",
        "vit_block", "inception_model", "concat_block",
    }
    assert not any(n.startswith("blocks.12.") for n in names)
    assert model.state_dict()["pos_embed"].shape == (1, 17, 192)
    assert model.state_dict()["concat_block.0.weight"].shape == (1024, 3216)


def test_sincos_positions_match_mae_definition():
    emb = sincos_position_embedding(192, 4)
    assert emb.shape == (17, 192)
    assert np.all(emb[0] == 0)  # CLS
    # patch (row 1, col 2) is token 1 + 1*4 + 2; channel 0 encodes the column, channel 96 the row
    token = emb[1 + 4 + 2]
    assert token[0] == pytest.approx(np.sin(2.0))
    assert token[48] == pytest.approx(np.cos(2.0))
    assert token[96] == pytest.approx(np.sin(1.0))
    assert token[144] == pytest.approx(np.cos(1.0))


def test_mae_masks_three_quarters_and_transfers_encoder():
    torch.manual_seed(1)
    mae = MaskedAutoencoder()
    loss, pred, mask = mae(torch.randn(4, 5, 32, 32))
    assert pred.shape == (4, 16, 8 * 8 * 5)
    assert mask.sum(dim=1).tolist() == [12.0] * 4
    loss.backward()
    assert mae.patch_embed.proj.weight.grad is not None
    assert len(mae.decoder_blocks) == 4 and mae.decoder_embed.out_features == 192

    target = AstroMAE()
    result = target.load_state_dict(mae.encoder_state_dict(), strict=False)
    assert result.unexpected_keys == []
    assert torch.equal(target.blocks[3].attn.qkv.weight, mae.blocks[3].attn.qkv.weight)


def test_patchify_orders_patches_like_the_patch_embedding():
    mae = MaskedAutoencoder()
    image = torch.arange(5 * 32 * 32, dtype=torch.float32).reshape(1, 5, 32, 32)
    patches = mae.patchify(image)
    # token 1 is row 0, column 1: pixels [0:8, 8:16]; channel is the fastest axis
    assert patches[0, 1, 0].item() == image[0, 0, 0, 8].item()
    assert patches[0, 1, 1].item() == image[0, 1, 0, 8].item()


def test_export_attention_form_equals_timm_form(model):
    """The per-head attention used for ONNX export computes what the timm form computes."""
    torch.manual_seed(1)
    x = torch.randn(3, 17, 192)
    attn = model.blocks[0].attn
    with torch.no_grad():
        timm_form, per_head = attn(x), attn._forward_per_head(x)
    assert timm_form.shape == per_head.shape == (3, 17, 192)
    assert torch.allclose(timm_form, per_head, atol=1e-6)
