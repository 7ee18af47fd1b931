"""Edge-case prompt variants: paraphrase templates, mixed-language snippets, typos, casing and whitespace
noise, truncation to fragments, very short messages, missing-information variants.

    >>> import random
    >>> from curate.expand.edge import variant
    >>> v = variant("forgot my password, email is jenny.ko@outlook.com", random.Random(3), "mixed_language",
    ...             protect={"jenny.ko@outlook.com"})
    >>> v.text, v.keeps_answer                                                  # doctest: +SKIP
    ('Hola, forgot my password, email is jenny.ko@outlook.com Gracias.', True)

Each transform says whether it keeps the answer: a variant that only adds noise or a wrapper around the same
request (`keeps_answer=True`) may inherit its parent's response, which is then re-checked against every rule;
one that removes information (truncation, very short, missing information) needs a new answer and goes to
labeling. Tokens in `protect` (values the parent's response copies from the prompt) are never altered by typos.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field

PARAPHRASES = (
    "hi, {x}",
    "Hello support team, {x} Thanks in advance.",
    "quick question: {x}",
    "{x} Thanks!",
    "Not sure if this is the right place, but {x}",
    "Hey there. {x} Cheers",
    "Good morning! {x} Kind regards, a long-time customer",
    "{x}\n\nSent from my phone",
    "So... {x}",
    "Ok so here's the thing. {x}",
    "Sorry to bother you again. {x}",
    "{x} Would appreciate a quick reply.",
)
LANGUAGES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {  # templates, context sentences
    "es": (
        ("Hola, {x} Gracias.", "{x} (perdón, mi inglés no es muy bueno)", "Buenos días. {x} Saludos."),
        (
            "Escribo desde la oficina de Valencia, un compañero me dijo que les escribiera por aquí.",
            "Perdón por mezclar idiomas, todavía estoy aprendiendo inglés.",
            "Es la primera vez que escribo al soporte.",
        ),
    ),
    "fr": (
        ("Bonjour, {x} Merci beaucoup.", "{x} Merci d'avance !"),
        (
            "Je vous écris depuis mon téléphone, désolé pour les fautes de frappe.",
            "Mon anglais n'est pas parfait, excusez-moi.",
            "Un collègue m'a conseillé de vous écrire directement.",
        ),
    ),
    "de": (
        ("Hallo, {x} Danke!", "Guten Tag. {x} Vielen Dank im Voraus."),
        (
            "Ich schreibe Ihnen zum ersten Mal und hoffe, das ist der richtige Weg.",
            "Entschuldigung für mein Englisch.",
            "Ich habe schon in der Hilfe gesucht, aber nichts gefunden.",
        ),
    ),
    "it": (
        ("Ciao, {x} Grazie mille.", "Buongiorno! {x} Grazie."),
        (
            "Scusate il mio inglese, lo uso poco al lavoro.",
            "Vi scrivo dal telefono, scusate gli errori.",
            "Un collega mi ha detto di scrivervi qui.",
        ),
    ),
    "pt": (
        ("Olá! {x} Obrigado.", "{x} — desculpe o meu inglês"),
        (
            "Desculpem, o meu inglês não é muito bom.",
            "É a primeira vez que escrevo para o suporte.",
            "Estou a escrever do telemóvel, desculpem os erros.",
        ),
    ),
}
MIXED = tuple(t for templates, _ in LANGUAGES.values() for t in templates)
EN_CONTEXT = (  # context that changes nothing about the request
    "I've been a customer for a few years and this is the first time I write to support.",
    "I looked in the help center first but couldn't find anything about it.",
    "Writing from my work laptop, in case that matters.",
    "A colleague told me to contact you directly about this.",
    "I'm not very technical, so please bear with me.",
    "This has been on my to-do list for a couple of days now.",
)
KEEPS_ANSWER = {
    "paraphrase": True,
    "mixed_language": True,
    "noise": True,
    "typos": True,
    "truncate": False,
    "very_short": False,
    "missing_info": False,
}
PRIMARY = ("paraphrase", "mixed_language", "truncate", "very_short", "missing_info")
_EMAILISH = re.compile(r"\S+@\S+\.\w+|\b[A-Z]{2,}-?\d{2,}\b|\b\d{3,}\b")


@dataclass(frozen=True)
class Variant:
    text: str
    transforms: tuple[str, ...]
    keeps_answer: bool
    params: dict[str, object] = field(default_factory=dict)


def _lead(x: str) -> str:
    """Lower-case the first letter for mid-sentence insertion, unless it starts an acronym or 'I '."""
    if len(x) > 1 and x[0].isupper() and not x[1].isupper() and not re.match(r"I\b", x):
        return x[0].lower() + x[1:]
    return x


def typos(text: str, rng: random.Random, protect: set[str], n: int = 2) -> str:
    """n letter-level typos (swap, drop, double) in words of 4+ letters not inside a protected value."""
    protected = {w.lower() for p in protect for w in re.findall(r"\w+", p)}
    words = list(re.finditer(r"[A-Za-z]{4,}", text))
    words = [m for m in words if m.group(0).lower() not in protected]
    if not words:
        return text
    chosen = sorted(rng.sample(words, min(n, len(words))), key=lambda m: m.start(), reverse=True)
    for m in chosen:
        w = m.group(0)
        i = rng.randrange(1, len(w) - 1)
        op = rng.choice(("swap", "drop", "double"))
        if op == "swap":
            nw = w[:i] + w[i + 1] + w[i] + w[i + 2 :]
        elif op == "drop":
            nw = w[:i] + w[i + 1 :]
        else:
            nw = w[:i] + w[i] + w[i:]
        text = text[: m.start()] + nw + text[m.end() :]
    return text


def noise(text: str, rng: random.Random, protect: set[str]) -> str:
    """Casing and whitespace noise (values stay equal under the checks' normalization)."""
    op = rng.choice(("lower", "upper", "spaces", "newlines"))
    if op == "lower":
        return text.lower()
    if op == "upper":
        return text.upper()
    if op == "spaces":
        return "  " + re.sub(r" ", lambda _: "  " if rng.random() < 0.3 else " ", text) + "   "
    return re.sub(r"([.!?,]) ", lambda m: m.group(1) + ("\n" if rng.random() < 0.5 else " "), text) + "\n"


def truncate(text: str, rng: random.Random) -> str | None:
    words = text.split()
    if len(words) < 4:
        return None
    keep = max(2, int(len(words) * rng.uniform(0.35, 0.6)))
    return " ".join(words[:keep]).rstrip(",;:") + rng.choice(("", "...", " -"))


def very_short(text: str, rng: random.Random) -> str | None:
    words = [w.strip(".,!?;:") for w in text.split()]
    content = [w for w in words if len(w) >= 4 and not _EMAILISH.search(w)]
    if len(content) < 1 or len(words) <= 3:
        return None
    k = min(len(content), rng.choice((1, 2, 2, 3)))
    picked = sorted(rng.sample(range(len(content)), k))
    out = " ".join(content[i] for i in picked).lower()
    return out + rng.choice(("", "?", "??", "!", " pls"))


def missing_info(text: str, rng: random.Random, protect: set[str]) -> str | None:
    """Remove the values support would need (the parent's extracted values, e-mails, ids, numbers)."""
    out = text
    for p in sorted(protect, key=len, reverse=True):
        if p and p.lower() in out.lower():
            out = re.sub(re.escape(p), "", out, flags=re.IGNORECASE)
    out = _EMAILISH.sub("", out)
    out = re.sub(r"\s+([,.!?])", r"\1", re.sub(r"\s{2,}", " ", out)).strip(" ,;:-")
    if out == text.strip() or len(out.split()) < 2:
        return None
    return out


def variant(
    text: str,
    rng: random.Random,
    primary: str,
    *,
    protect: set[str] | None = None,
    extra_noise: bool = True,
    context: int = 0,
) -> Variant | None:
    """One edge variant of `text` made by `primary` (see PRIMARY), maybe with typos/noise on top.

    `context`: for paraphrase / mixed_language, that many sentences of neutral context (English, or the
    message's one other language for mixed_language) go before the request: the answer stays, the message grows.
    """
    protect = protect or set()
    text = text.strip()
    steps = [primary]
    params: dict[str, object] = {}
    if primary in ("paraphrase", "mixed_language"):
        if primary == "paraphrase":
            templates, pool = PARAPHRASES, EN_CONTEXT
        else:  # one language per message: its greeting, its context sentences
            lang = rng.choice(sorted(LANGUAGES))
            templates, pool = LANGUAGES[lang]
            params["language"] = lang
        tmpl = rng.choice(templates)
        params["template"] = tmpl
        extra = rng.sample(pool, min(context, len(pool))) if context else []
        if extra:
            params["context"] = extra
        body = " ".join(extra + [_lead(text) if extra else text])
        out: str | None = tmpl.format(x=body if tmpl.startswith("{x}") or extra else _lead(body))
    elif primary == "truncate":
        out = truncate(text, rng)
    elif primary == "very_short":
        out = very_short(text, rng)
    elif primary == "missing_info":
        out = missing_info(text, rng, protect)
    elif primary == "typos":
        out = typos(text, rng, protect)
    elif primary == "noise":
        out = noise(text, rng, protect)
    else:
        raise ValueError(f"unknown edge transform {primary!r}")
    if out is None:
        return None
    if extra_noise and primary not in ("very_short",):
        if rng.random() < 0.5:
            out = typos(out, rng, protect, n=rng.choice((1, 2)))
            steps.append("typos")
        if rng.random() < 0.35:
            out = noise(out, rng, protect)
            steps.append("noise")
    if not out.strip() or out.strip() == text:
        return None
    return Variant(out, tuple(steps), all(KEEPS_ANSWER[s] for s in steps), params)


__all__ = [
    "KEEPS_ANSWER",
    "LANGUAGES",
    "MIXED",
    "PARAPHRASES",
    "PRIMARY",
    "Variant",
    "missing_info",
    "noise",
    "truncate",
    "typos",
    "variant",
    "very_short",
]
