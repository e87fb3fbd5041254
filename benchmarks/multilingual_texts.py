"""Product texts in seven real languages (Czech, German, Spanish, Greek, Bulgarian, Turkish, Hungarian) for the
quality benchmark's ``multilingual`` catalogue: what a pretrained multilingual text encoder (``e5-small``) can
read and an encoder trained from scratch on a few hundred items has to learn word by word.

Each text names the garment type (90 %) and the pattern (``pattern_share``) with one of the language's words for
it, plus a colour, a brand and one generic sentence of that language; the words are dictionary translations
written by hand (small vocabularies, enough to tell the 10 classes apart)."""

from __future__ import annotations

import random

#: language -> type -> words for it
TYPES = {
    "cs": {"t-shirt": ["tričko", "triko"], "jacket": ["bunda", "sako"], "dress": ["šaty"],
           "trousers": ["kalhoty"], "skirt": ["sukně"], "scarf": ["šála", "šátek"]},
    "de": {"t-shirt": ["T-Shirt", "Shirt"], "jacket": ["Jacke", "Blazer"], "dress": ["Kleid", "Sommerkleid"],
           "trousers": ["Hose", "Stoffhose"], "skirt": ["Rock", "Minirock"], "scarf": ["Schal", "Tuch"]},
    "es": {"t-shirt": ["camiseta"], "jacket": ["chaqueta", "cazadora"], "dress": ["vestido"],
           "trousers": ["pantalones", "pantalón"], "skirt": ["falda"], "scarf": ["bufanda", "pañuelo"]},
    "el": {"t-shirt": ["μπλουζάκι", "κοντομάνικο"], "jacket": ["μπουφάν", "σακάκι"], "dress": ["φόρεμα"],
           "trousers": ["παντελόνι"], "skirt": ["φούστα"], "scarf": ["κασκόλ", "φουλάρι"]},
    "bg": {"t-shirt": ["тениска"], "jacket": ["яке", "сако"], "dress": ["рокля"], "trousers": ["панталон"],
           "skirt": ["пола"], "scarf": ["шал"]},
    "tr": {"t-shirt": ["tişört"], "jacket": ["ceket", "mont"], "dress": ["elbise"], "trousers": ["pantolon"],
           "skirt": ["etek"], "scarf": ["atkı", "eşarp"]},
    "hu": {"t-shirt": ["póló"], "jacket": ["kabát", "dzseki"], "dress": ["ruha"], "trousers": ["nadrág"],
           "skirt": ["szoknya"], "scarf": ["sál"]},
}
#: language -> pattern -> words for it
PATTERNS = {
    "cs": {"plain": ["jednobarevné"], "striped": ["pruhované"], "dotted": ["puntíkované"],
           "checked": ["kostkované"], "zigzag": ["klikaté"]},
    "de": {"plain": ["einfarbig", "uni"], "striped": ["gestreift"], "dotted": ["gepunktet"],
           "checked": ["kariert"], "zigzag": ["Zickzack"]},
    "es": {"plain": ["liso"], "striped": ["de rayas"], "dotted": ["de lunares"], "checked": ["de cuadros"],
           "zigzag": ["en zigzag"]},
    "el": {"plain": ["μονόχρωμο"], "striped": ["ριγέ"], "dotted": ["πουά"], "checked": ["καρό"],
           "zigzag": ["ζικ-ζακ"]},
    "bg": {"plain": ["едноцветна"], "striped": ["на райета"], "dotted": ["на точки"], "checked": ["на каре"],
           "zigzag": ["на зигзаг"]},
    "tr": {"plain": ["düz"], "striped": ["çizgili"], "dotted": ["puantiyeli"], "checked": ["ekose"],
           "zigzag": ["zikzak"]},
    "hu": {"plain": ["egyszínű"], "striped": ["csíkos"], "dotted": ["pöttyös"], "checked": ["kockás"],
           "zigzag": ["cikkcakkos"]},
}
COLOURS = {
    "cs": ["červená", "modrá", "zelená", "černá", "bílá", "šedá"],
    "de": ["rot", "blau", "grün", "schwarz", "weiß", "grau"],
    "es": ["rojo", "azul", "verde", "negro", "blanco", "gris"],
    "el": ["κόκκινο", "μπλε", "πράσινο", "μαύρο", "λευκό", "γκρι"],
    "bg": ["червена", "синя", "зелена", "черна", "бяла", "сива"],
    "tr": ["kırmızı", "mavi", "yeşil", "siyah", "beyaz", "gri"],
    "hu": ["piros", "kék", "zöld", "fekete", "fehér", "szürke"],
}
SENTENCES = {
    "cs": ["Pohodlný střih na každý den.", "Vyrobeno z příjemného materiálu.", "Doprava zdarma."],
    "de": ["Bequemer Schnitt für jeden Tag.", "Aus angenehmem Material.", "Kostenloser Versand."],
    "es": ["Corte cómodo para todos los días.", "Hecho de un material agradable.", "Envío gratuito."],
    "el": ["Άνετη γραμμή για κάθε μέρα.", "Από ευχάριστο ύφασμα.", "Δωρεάν αποστολή."],
    "bg": ["Удобна кройка за всеки ден.", "От приятна материя.", "Безплатна доставка."],
    "tr": ["Her gün için rahat kesim.", "Hoş bir kumaştan yapılmıştır.", "Ücretsiz kargo."],
    "hu": ["Kényelmes szabás minden napra.", "Kellemes anyagból készült.", "Ingyenes szállítás."],
}
BRANDS = ["Northwind", "Maison Lune", "Redfern", "Kestrel", "Oakline", "Vela"]
LANGUAGES = tuple(TYPES)


#: The ``multilingual-transfer`` catalogue trains on these languages (Latin script) ...
TRANSFER_TRAIN = ("cs", "de", "es", "hu")
#: ... and tests on these, which its training texts never show (Greek, Cyrillic, Turkish).
TRANSFER_TEST = ("el", "bg", "tr")


def multilingual_text(rng: random.Random, gtype: str, pattern: str, pattern_share: float = 0.6,
                      languages: tuple[str, ...] = LANGUAGES) -> tuple[str, str]:
    """``(language, text)``: a product text in a random one of ``languages``."""
    lang = rng.choice(languages)
    words = [rng.choice(BRANDS), rng.choice(COLOURS[lang])]
    if rng.random() < pattern_share:
        words.append(rng.choice(PATTERNS[lang][pattern]))
    if rng.random() < 0.9:
        words.append(rng.choice(TYPES[lang][gtype]))
    return lang, " ".join(words) + "\n" + rng.choice(SENTENCES[lang])
