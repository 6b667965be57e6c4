"""A tiny sentence-transformers model built from nothing (no download): a 2-layer BERT with random
weights and a WordPiece tokenizer trained on the fixture sentences, plus a small BEIR-style corpus."""

from __future__ import annotations

import json
from pathlib import Path

TOPICS = {
    "cats": ("Domestic cats and their habits",
             ["Cats sleep for most of the day in warm places.", "A cat purrs when it feels content and safe.",
              "Domestic cats were first kept in ancient Egypt to hunt mice.", "Kittens learn to hunt by playing."]),
    "dogs": ("Dogs as loyal companions",
             ["Dogs were domesticated from grey wolves long ago.", "A dog barks to warn its family of strangers.",
              "Training a puppy takes patience and small rewards.", "Sheep dogs herd flocks across the hills."]),
    "mars": ("The red planet Mars",
             ["Mars is the fourth planet from the Sun.", "Its red colour comes from iron oxide dust on the surface.",
              "The Perseverance rover landed on Mars in 2021.", "Olympus Mons on Mars is the tallest volcano known."]),
    "moon": ("The Moon and its orbit",
             ["The Moon orbits the Earth every twenty seven days.", "Neil Armstrong walked on the Moon in 1969.",
              "Tides on Earth are raised by the pull of the Moon.", "The far side of the Moon was first seen by a probe."]),
    "bread": ("Baking bread at home",
              ["Bread is made from flour, water, yeast and salt.", "Dough rises as the yeast ferments the sugars.",
               "Bake the loaf in a hot oven until the crust is brown.", "Sourdough uses a wild yeast starter culture."]),
    "tea": ("Tea growing and brewing",
            ["Tea leaves are picked by hand on steep hillside farms.", "Green tea is steamed soon after picking.",
             "Black tea is oxidised before it is dried and rolled.", "Water for green tea should not be boiling."]),
    "rivers": ("Rivers and their valleys",
               ["Rain falls on the hills and runs into small streams.", "Streams join into rivers that carve valleys.",
                "A river delta forms where sediment settles at the sea.", "Floods spread fertile silt over the plains."]),
    "bees": ("Honey bees in the hive",
             ["Honey bees collect nectar from flowers all summer.", "Worker bees build wax combs inside the hive.",
              "The queen bee lays thousands of eggs each day.", "Bees dance to tell others where flowers grow."]),
    "chess": ("The game of chess",
              ["Chess is played on a board of sixty four squares.", "The Sicilian Defence is a popular chess opening.",
               "A pawn that reaches the last rank is promoted.", "Checkmate ends the game when the king cannot escape."]),
    "solar": ("Solar power for homes",
              ["Solar panels turn sunlight into electric current.", "An inverter changes direct into alternating current.",
               "Batteries store solar energy for use at night.", "Panels facing south collect the most light here."]),
    "owls": ("Owls hunting at night",
             ["Owls hunt at night and locate mice by sound.", "Their ears are set at different heights on the head.",
              "Soft feathers let owls fly almost silently.", "Owls swallow small prey whole and cough up pellets."]),
    "trains": ("Steam trains and railways",
               ["Steam trains burn coal to boil water in the boiler.", "The first public railway opened in 1825.",
                "Rails are laid on wooden sleepers over gravel.", "Signals tell the driver when the line is clear."]),
}


def corpus_docs() -> list[dict]:
    """Two documents per topic (the sentences split in halves), each with a title."""
    docs = []
    for key, (title, sents) in TOPICS.items():
        docs.append({"_id": f"{key}-a", "title": title, "text": " ".join(sents[:3])})
        docs.append({"_id": f"{key}-b", "title": title + " (notes)", "text": " ".join(sents[1:] + sents[:1])})
    return docs


def write_beir(root: Path, train_qrels: bool = True) -> Path:
    """A BEIR folder over the fixture corpus: queries are the first sentence of each topic, paraphrased."""
    root.mkdir(parents=True, exist_ok=True)
    docs = corpus_docs()
    (root / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    queries = [{"_id": f"q-{k}", "text": f"what about {t.lower()}?"} for k, (t, _s) in TOPICS.items()]
    (root / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries))
    (root / "qrels").mkdir(exist_ok=True)
    keys = list(TOPICS)
    test = "".join(f"q-{k}\t{k}-a\t1\n" for k in keys[:4])
    train = "".join(f"q-{k}\t{k}-a\t1\nq-{k}\t{k}-b\t1\n" for k in keys[4:])
    (root / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + test)
    if train_qrels:
        (root / "qrels" / "train.tsv").write_text("query-id\tcorpus-id\tscore\n" + train)
    return root


def build_tiny_model(out: Path, seed: int = 0) -> Path:
    """BertConfig(hidden 32, 2 layers, 2 heads) + WordPiece trained on the fixture text, mean pooling."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BertConfig, BertModel, BertTokenizerFast

    texts = [s for _t, sents in TOPICS.values() for s in sents] + [t for t, _s in TOPICS.values()]
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.train_from_iterator(texts * 3, trainers.WordPieceTrainer(vocab_size=600, special_tokens=specials))
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)])
    tok.decoder = decoders.WordPiece()
    hf = out.parent / (out.name + "-hf")
    fast = BertTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                             sep_token="[SEP]", mask_token="[MASK]", model_max_length=128)
    fast.save_pretrained(hf)
    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=tok.get_vocab_size(), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=130)
    BertModel(cfg).save_pretrained(hf)
    tr = Transformer(str(hf), max_seq_length=128)
    model = SentenceTransformer(modules=[tr, Pooling(32, "mean"), Normalize()], device="cpu")
    model.save(str(out))
    return out
