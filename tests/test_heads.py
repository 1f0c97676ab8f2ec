"""The learned machine heads: shapes, cost, that they learn, and the store's use of them."""

import numpy as np
import torch

import mostore
from conftest import natural_image
from mostore import heads
from mostore.heads import (
    LatentClassifier,
    LatentEmbedder,
    LatentNet,
    LearnedEmbedding,
    PooledEmbedding,
    fit_latent_classifier,
    prepare_latents,
)
from mostore.heads_train import fit_embedder, supcon_loss


def test_prepare_latents_any_size():
    for h, w in ((1, 1), (7, 9), (14, 14), (40, 23)):
        out = prepare_latents(torch.randn(16, h, w))
        assert out.shape == (1, 16, 14, 14)
    y = torch.randn(2, 16, 14, 14)
    assert torch.equal(prepare_latents(y), y)
    # shrinking averages (antialiased): a constant map stays constant, checkerboards fade
    board = (torch.arange(56)[:, None] + torch.arange(56)[None]) % 2 * 2.0 - 1.0
    assert prepare_latents(board.expand(3, 56, 56)).abs().max() < 0.2


def test_trunk_macs_match_the_convolutions_that_run():
    net = LatentNet(192, 64)
    counted = 0

    def hook(m, args, out):
        nonlocal counted
        counted += out.numel() * m.weight[0].numel()

    for m in net.modules():
        if isinstance(m, torch.nn.Conv2d):
            m.register_forward_hook(hook)
    net.eval()(torch.zeros(1, 192, 14, 14))
    assert counted == net.macs()
    assert 20e6 < net.macs() < 60e6  # a fraction of a ResNet-18 (1.8 G)


def test_classifier_learns_a_separable_problem():
    gen = torch.Generator().manual_seed(0)
    t = torch.arange(200) % 2
    x = torch.randn(200, 8, 14, 14, generator=gen)
    x[:, 3] += (t * 2 - 1)[:, None, None] * 0.8  # class lives in one channel's mean
    model, acc = fit_latent_classifier(x[:160], t[:160], 2, epochs=8, val_latents=x[160:], val_targets=t[160:])
    assert acc >= 0.9
    assert model.arch == LatentClassifier.arch


def test_supcon_loss_prefers_aligned_views():
    images = torch.tensor([0, 0, 1, 1, 2, 2])
    labels = torch.tensor([0, 0, 0, 0, 1, 1])
    aligned = torch.nn.functional.normalize(torch.eye(3).repeat_interleave(2, 0) + 0.01, dim=1)
    rand = torch.nn.functional.normalize(torch.randn(6, 3, generator=torch.Generator().manual_seed(1)), dim=1)
    for alpha in (0.0, 1.0):
        assert supcon_loss(aligned, images, labels, tau=0.1, alpha=alpha) < supcon_loss(
            rand, images, labels, tau=0.1, alpha=alpha)


def _tiny_embedder(tmp_path, channels=16):
    gen = torch.Generator().manual_seed(0)
    base = torch.randn(20, channels, 14, 14, generator=gen)
    views = torch.cat([base + 0.1 * torch.randn(base.shape, generator=gen) for _ in range(3)])
    groups = torch.arange(20).repeat(3)
    model = fit_embedder(views, groups % 4, groups, dim=8, epochs=2, batch=8, log=lambda m: None)
    path = tmp_path / "embed.pt"
    torch.save({"info": {"dim": 8, "arch": model.arch}, "state": {k: v.half() if v.is_floating_point() else v
                                                                  for k, v in model.state_dict().items()}}, path)
    return path


def test_learned_embedding_round_trip(tmp_path):
    emb = LearnedEmbedding.load(_tiny_embedder(tmp_path))
    assert emb.dim == 8 and emb.id.startswith("learned-")
    lat = [torch.randn(1, 16, 5, 7), torch.randn(16, 20, 14)]
    vecs = emb.batch(lat)
    assert vecs.shape == (2, 8) and vecs.dtype == np.float32
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    assert np.allclose(emb(lat[0]), vecs[0], atol=1e-5)  # batch and single agree
    assert emb.batch([]).shape == (0, 8)
    assert isinstance(LatentEmbedder(16, 8)(torch.zeros(2, 16, 14, 14)), torch.Tensor)


def test_a_query_is_embedded_at_its_own_size_and_at_the_heads(tmp_path, tiny_codec):
    from PIL import Image

    emb = LearnedEmbedding.load(_tiny_embedder(tmp_path))
    side = heads.CLASSIFIER_GRID * tiny_codec.stride
    sizes = []

    class Spy:  # the codec, recording the size of each image it encodes
        stride = tiny_codec.stride

        def encode_with_latents(self, image, quality):
            sizes.append(image.size)
            return tiny_codec.encode_with_latents(image, quality)

    def query(w, h, mode="RGB"):
        sizes.clear()
        image = Image.fromarray(natural_image(1, (w, h))).convert(mode)
        v = emb.query(Spy(), image, 2)
        assert v.shape == (8,) and v.dtype == np.float32 and abs(np.linalg.norm(v) - 1) < 1e-5
        return image, v

    query(side + 10, side + 30)
    assert sizes == [(side + 10, side + 30)]  # about the head's size: encoded once
    image, v = query(side // 2, side // 4)
    assert sizes == [(side // 2, side // 4), (2 * side, side)]  # short side brought to the head's
    two = emb.batch([tiny_codec.encode_with_latents(im, 2)[1] for im in (
        image, image.resize(sizes[1], Image.BICUBIC))]).sum(0)
    assert np.allclose(v, two / np.linalg.norm(two), atol=1e-5)
    query(side // 2, side // 2, "RGBA")
    assert sizes[1] == (side, side)
    query(3 * side, 2 * side)  # larger than the head's size: its own latents only
    assert len(sizes) == 1
    query(40 * side, 2)  # a sliver is not blown up to 20 squares
    assert len(sizes) == 1


def test_table_reindexes_when_the_embedding_changes(tmp_path, tiny_codec, monkeypatch):
    """A table indexed with the fixed pooling (older releases) is re-indexed on open, and says so."""
    db = mostore.connect(tmp_path / "db", codec=tiny_codec)
    tbl = db.create_table("t")
    tbl.add([natural_image(i) for i in range(6)])
    assert tbl.stats()["embedder"] == PooledEmbedding(16).id
    learned = LearnedEmbedding.load(_tiny_embedder(tmp_path))
    monkeypatch.setattr("mostore.store.load_embedder", lambda codec: learned)
    again = mostore.connect(tmp_path / "db", codec=tiny_codec).open_table("t")
    hits = again.search(natural_image(3)).limit(3).to_list()
    assert hits[0]["id"] == 4
    stats = again.stats()
    assert stats["embedder"] == learned.id and stats["embedding_dim"] == 8
    assert stats["reindexed_from"] == PooledEmbedding(16).id and stats["index_count"] == 6


def test_shipped_embedder_matches_the_shipped_codec():
    codec = mostore.Codec.load()
    assert heads.embedder_path(codec.id).is_file(), "the default codec ships without its embedding"
    emb = heads.load_embedder(codec)
    assert isinstance(emb, LearnedEmbedding)
    y = codec.latents(codec.encode(natural_image(0, (96, 80))))
    v = emb(y)
    assert v.shape == (emb.dim,) and abs(np.linalg.norm(v) - 1) < 1e-4


def test_fit_classifier_starts_from_the_learned_trunk(tmp_path, tiny_codec, monkeypatch):
    learned = LearnedEmbedding.load(_tiny_embedder(tmp_path))
    monkeypatch.setattr("mostore.store.load_embedder", lambda codec: learned)
    tbl = mostore.connect(tmp_path / "db", codec=tiny_codec).create_table("t")
    red = [np.full((32, 32, 3), (200 + i, 20, 20), np.uint8) for i in range(8)]
    blue = [np.full((32, 32, 3), (20, 20, 200 + i), np.uint8) for i in range(8)]
    tbl.add(red + blue, metadata=[{"label": "red"}] * 8 + [{"label": "blue"}] * 8)
    info = tbl.fit_classifier("colour", label="label", epochs=30)
    assert info["pretrained_trunk"] and info["arch"] == LatentClassifier.arch
    assert tbl.classify(np.full((32, 32, 3), (210, 30, 30), np.uint8), classifier="colour")["label"] == "red"


def test_shipped_embedder_sees_through_variants():
    """Flipped, cropped, resized, re-toned and JPEG'd copies find their originals among the samples."""
    from PIL import Image

    from mostore.cli import SAMPLES
    from mostore.views import DUPLICATE, variant

    codec = mostore.Codec.load()
    emb = heads.load_embedder(codec)
    files = sorted(SAMPLES.glob("*/*.JPEG"))[::2]
    images = [Image.open(f).convert("RGB") for f in files]
    rng = np.random.default_rng(0)
    db = emb.batch([codec.latents(codec.encode(im)) for im in images])
    variants = [variant(im, rng, DUPLICATE) for im in images]
    queries = emb.batch([codec.latents(codec.encode(v)) for v in variants])
    found = (queries @ db.T).argmax(1) == np.arange(len(images))
    assert found.mean() >= 0.9, found
    # what a search by image does: the query also at the head's native size
    queries = np.stack([emb.query(codec, v, codec.quality) for v in variants])
    found = (queries @ db.T).argmax(1) == np.arange(len(images))
    assert found.mean() >= 0.9, found
