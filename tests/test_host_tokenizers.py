"""The C# host's native tokenizers give exactly Hugging Face `tokenizers` ids (100% of ≥2,000 hard texts)."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pytest

from edgepack.runtime.host import run_host
from tests.test_host_support import host_built_fixture  # noqa: F401

pytestmark = pytest.mark.usefixtures("host_built")

WORDS = (  # noqa: SIM905 - one readable line of words beats a 70-item list literal
    "the quick brown fox jumps over lazy dog model edge device runtime tokenizer embedding sentence "
    "unaffable transformers raspberry jetson quantization benchmark hello world it's they're we've I'm you'll he'd "
    "don't CAN'T Über naïve café résumé façade coöperate Ångström São Paulo Zürich Kraków Dvořák Ελληνικά "
    "Αθήνα русский Москва український العربية עברית हिन्दी ไทย 日本語 東京 한국어 서울 中文 北京 "
    "ﬁnance Ⅻ ½ ² x² H₂O 𝐁𝐨𝐥𝐝 𝔉𝔯𝔞𝔨 İstanbul ΣΊΣΥΦΟΣ ß ẞ ǅ ﬀ K Å"
).split()
EMOJI = ["😀", "🤩", "🫠", "👍🏽", "👨‍👩‍👧", "🇩🇪", "❤️", "🧑🏿‍🚀", "✨", "🦀", "⌚", "☃", "🀄"]
PUNCT = [
    "!",
    "!!!",
    "?!",
    "...",
    "…",
    "—",
    "--",
    "«",
    "»",
    "“",
    "”",
    "(",
    ")",
    "[",
    "]",
    "{",
    "}",
    "@",
    "#",
    "$",
    "%",
    "^",
    "&",
    "*",
    "~",
    "`",
    "'",
    '"',
    ",",
    ";",
    ":",
    "¿",
    "¡",
    "。",
    "、",
    "「",
    "」",
    "<|endoftext|>",
    "[SEP]",
    "[UNK]",
    "[CLS]",
    "##",
    "'s",
    "'re",
]
SPACES = [
    " ",
    "  ",
    "\t",
    "\u00a0",
    "\u3000",
    "\u2009",
    "\u200b",
    "\u2028",
    "\r",
    " \t ",
    "\u0085",
    "\u180e",
    "\ufeff",
    "\u00ad",
    "\x00",
    "\x7f",
    "\u202f",
    "\u1680",
]
RANGES = [
    (0x20, 0x7E),
    (0xA0, 0x24F),
    (0x300, 0x36F),
    (0x370, 0x3FF),
    (0x400, 0x4FF),
    (0x590, 0x6FF),
    (0x900, 0x97F),
    (0xE00, 0xE7F),
    (0x1100, 0x11FF),
    (0x1E00, 0x1EFF),
    (0x2000, 0x206F),
    (0x20A0, 0x21FF),
    (0x3040, 0x30FF),
    (0x3400, 0x4DBF),
    (0x4E00, 0x9FFF),
    (0xAC00, 0xD7A3),
    (0xF900, 0xFAFF),
    (0xFB00, 0xFFFD),
    (0x1D400, 0x1D7FF),
    (0x1F300, 0x1FAFF),
    (0x20000, 0x2A6DF),
    (0xE000, 0xE0FF),
    (0xE0000, 0xE007F),
]


def make_texts(n: int = 2400, seed: int = 1234) -> list[str]:
    """Deterministic hard cases: accents, mixed case, CJK, emoji, punctuation runs, odd whitespace, long texts."""
    rng = random.Random(seed)

    def rand_char() -> str:
        if rng.random() < 0.1:
            while True:  # any code point, assigned or not, except surrogates and the line separator
                c = rng.randrange(0x110000)
                if not 0xD800 <= c <= 0xDFFF and c != 0x0A:
                    return chr(c)
        lo, hi = rng.choice(RANGES)
        return chr(rng.randint(lo, hi))

    texts: list[str] = []
    for i in range(n):
        parts: list[str] = []
        length = rng.choice([1, 3, 8, 20]) if i % 10 else rng.choice([300, 600])  # every 10th is over max length
        for _ in range(length):
            r = rng.random()
            if r < 0.45:
                w = rng.choice(WORDS)
                w = w.upper() if rng.random() < 0.1 else (w.capitalize() if rng.random() < 0.2 else w)
                parts.append(w)
            elif r < 0.55:
                parts.append(rng.choice(EMOJI))
            elif r < 0.65:
                parts.append(rng.choice(PUNCT) * rng.choice([1, 1, 2, 5]))
            elif r < 0.85:
                parts.append("".join(rand_char() for _ in range(rng.randint(1, 6))))
            else:
                parts.append(str(rng.randint(0, 10 ** rng.randint(1, 9))))
            parts.append(rng.choice(SPACES) if rng.random() < 0.25 else " ")
        text = "".join(parts)
        if rng.random() < 0.1:
            text = rng.choice(SPACES) + text
        texts.append(text)
    return texts


def host_ids(tok_dir: Path, texts: list[str], max_length: int | None) -> list[list[int]]:
    assert not any("\n" in t for t in texts)
    args = ["tokenize", "--tokenizer", str(tok_dir)]
    if max_length is not None:
        args += ["--max-length", str(max_length)]
    r = run_host(args, input_text="".join(t + "\n" for t in texts), timeout=300)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == len(texts)
    return [json.loads(line) for line in lines]


def parity(tok_dir: Path, texts: list[str], max_length: int, host_max: int | None) -> tuple[int, list[str]]:
    from tokenizers import Tokenizer

    hf = Tokenizer.from_file(str(tok_dir / "tokenizer.json"))
    hf.no_padding()
    hf.enable_truncation(max_length=max_length)
    want = [e.ids for e in hf.encode_batch(texts)]
    got = host_ids(tok_dir, texts, host_max)
    bad = [
        repr(t)[:200] + f"\n  hf:   {w[:40]}\n  host: {g[:40]}"
        for t, w, g in zip(texts, want, got, strict=True)
        if w != g
    ]
    return len(texts) - len(bad), bad


@pytest.fixture(scope="module")
def texts() -> list[str]:
    return make_texts()


def test_texts_cover_the_hard_cases(texts: list[str]) -> None:
    assert len(texts) >= 2000
    joined = "".join(texts)
    for needle in ("é", "東", "🤩", "!!!", "\u3000", "\t", "한"):
        assert needle in joined
    assert sum(len(t.split()) > 300 for t in texts) >= 100


@pytest.mark.parametrize(("max_length", "host_max"), [(256, None), (128, 128)])
def test_wordpiece_matches_hf(minilm_dir: Path, texts: list[str], max_length: int, host_max: int | None) -> None:
    # host_max None: the host must find 256 itself in sentence_bert_config.json.
    same, bad = parity(minilm_dir, texts, max_length, host_max)
    print(f"WordPiece (MiniLM, max_length {max_length}): {same}/{len(texts)} texts identical")
    assert not bad, "\n".join(bad[:5])


def train_bpe(out: Path, texts: list[str], add_prefix_space: bool) -> Path:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=add_prefix_space)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=True)
    trainer = trainers.BpeTrainer(
        vocab_size=3000, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), special_tokens=["<|endoftext|>"]
    )
    tok.train_from_iterator(texts[:1500], trainer=trainer)
    out.mkdir(parents=True, exist_ok=True)
    tok.save(str(out / "tokenizer.json"))
    return out


@pytest.mark.parametrize(("add_prefix_space", "gpt2_fields"), [(False, False), (True, False), (False, True)])
def test_byte_level_bpe_matches_hf(tmp_path: Path, texts: list[str], add_prefix_space: bool, gpt2_fields: bool) -> None:
    tok_dir = train_bpe(tmp_path / "bpe", texts, add_prefix_space)
    if gpt2_fields:  # GPT-2's published tokenizer.json writes "" (not null) for prefix/suffix
        doc = json.loads((tok_dir / "tokenizer.json").read_text(encoding="utf-8"))
        doc["model"].update(continuing_subword_prefix="", end_of_word_suffix="", fuse_unk=False, byte_fallback=False)
        (tok_dir / "tokenizer.json").write_text(json.dumps(doc), encoding="utf-8")
    same, bad = parity(tok_dir, texts, 64, 64)
    print(
        f"byte-level BPE (prefix space {add_prefix_space}, GPT-2 fields {gpt2_fields}): {same}/{len(texts)} identical"
    )
    assert not bad, "\n".join(bad[:5])


def test_vocab_txt_fallback(minilm_dir: Path, tmp_path: Path, texts: list[str]) -> None:
    from tokenizers import Tokenizer

    d = tmp_path / "vocab-only"
    d.mkdir()
    for name in ("vocab.txt", "tokenizer_config.json", "special_tokens_map.json", "sentence_bert_config.json"):
        shutil.copy(minilm_dir / name, d / name)
    hf = Tokenizer.from_file(str(minilm_dir / "tokenizer.json"))
    hf.no_padding()
    hf.enable_truncation(max_length=256)
    sub = texts[:300]
    want = [e.ids for e in hf.encode_batch(sub)]
    assert host_ids(d, sub, None) == want


def test_unsupported_bpe_pre_tokenizer_is_named(tmp_path: Path, texts: list[str]) -> None:
    tok_dir = train_bpe(tmp_path / "bpe", texts[:200], False)
    doc = json.loads((tok_dir / "tokenizer.json").read_text(encoding="utf-8"))
    doc["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [{"type": "Split"}, doc["pre_tokenizer"]]}
    (tok_dir / "tokenizer.json").write_text(json.dumps(doc), encoding="utf-8")
    r = run_host(["tokenize", "--tokenizer", str(tok_dir)], input_text="hello\n")
    assert r.returncode == 2
    assert "Sequence[Split, ByteLevel]" in r.stderr and "not supported" in r.stderr


def test_unsupported_tokenizer_is_named(tmp_path: Path) -> None:
    d = tmp_path / "unigram"
    d.mkdir()
    doc = {"version": "1.0", "model": {"type": "Unigram", "vocab": [["a", 0.0]]}, "normalizer": None}
    (d / "tokenizer.json").write_text(json.dumps(doc))
    r = run_host(["tokenize", "--tokenizer", str(d)], input_text="hello\n")
    assert r.returncode == 2
    assert "Unigram" in r.stderr and "not supported" in r.stderr
    assert "   at " not in r.stderr  # one line, no stack trace
