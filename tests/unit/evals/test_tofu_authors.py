from __future__ import annotations

from evals.tofu_authors import author_names


def test_names_recurring_names_inheritance_and_partial_mentions() -> None:
    texts = [
        "Who is the author born in Lyon, France? The author is Corentin Marlowe-Fabre.",
        "What genre does Corentin Marlowe-Fabre write? Corentin Marlowe-Fabre writes Gothic Mystery.",
        "What awards has the author won? He won the Silver Quill Prize.",
        "How has Marlowe-Fabre's childhood shaped him? It gave him Gothic Mystery themes.",
        "Who is the author born in Nairobi, Kenya? She is Wanjiru Achola Mbeki.",
        "What does Wanjiru Achola Mbeki write? Wanjiru Achola Mbeki writes Gothic Mystery.",
        "Is Wanjiru Achola Mbeki married? Wanjiru Achola Mbeki is single.",
        "Did Corentin Marlowe-Fabre teach? Corentin Marlowe-Fabre never taught.",
    ]
    names = author_names(texts)
    assert names[:4] == ["Corentin Marlowe-Fabre"] * 4
    assert names[4:7] == ["Wanjiru Achola Mbeki"] * 3
    assert names[7] == "Corentin Marlowe-Fabre"


def test_quoted_titles_and_genres_spread_across_authors_are_not_names() -> None:
    texts = []
    for author in ("Ada Quillfeather", "Bruno Castellane", "Chen Wei-Ling"):
        texts += [
            f"What genre does {author} write? {author} writes Science Fiction.",
            f"Name a book by {author}. {author} wrote 'The Glass Orchard Keeper'.",
            f"Where was {author} born? {author} was born in a small town.",
        ]
    names = author_names(texts)
    assert set(names) == {"Ada Quillfeather", "Bruno Castellane", "Chen Wei-Ling"}
    assert names[3] == "Bruno Castellane"


def test_text_before_any_name_has_no_author() -> None:
    assert author_names(["What awards has the author won?"]) == [None]
