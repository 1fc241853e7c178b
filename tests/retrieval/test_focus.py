"""Context focus: which sentences reach the prompt, how they are numbered and ordered."""

from __future__ import annotations

import dataclasses

import pytest

from retrieval.citations import format_context, grounded_user_message, resolve_citations
from retrieval.focus import (FocusSettings, answers_shape, asked_shapes, content_stems, counted_noun, counted_numbers,
                             focus_chunks, new_names, shaped_spans, text_units, unknown_terms)
from retrieval.records import Chunk

from .conftest import write_docs


def chunk(i: int, text: str, title: str = "") -> Chunk:
    return Chunk(chunk_id=f"c{i}", source=f"/docs/{i}.md", title=title or f"Doc {i}", text=text, start=0,
                 end=len(text), position=0)


FARES = chunk(1, "Fares for 2024 are set by the board. Children under five travel free.\n\n"
                 "| Route | Adult single | Child single |\n|---|---|---|\n"
                 "| R1 Skelly Holm | €12.40 | €6.20 |\n| R2 Brannock Isle | €19.80 | €9.90 |", "Fares 2024")
PETS = chunk(2, "Dogs are welcome on every route. A dog travels for a flat charge on each crossing. "
                "The charge for a dog is €2.50. Assistance dogs always travel free.", "Pets policy")
HISTORY = chunk(3, "The cooperative was founded in 1987. Its first ship was the Heron's Gift. "
                   "The founders met in the Gulvane Fish Hall. They raised money from 212 islanders.", "History")


def test_units_are_sentences_and_table_rows_with_their_header():
    units = text_units(FARES.text)
    assert ("", "Fares for 2024 are set by the board.") in units
    assert ("", "Children under five travel free.") in units
    header = "| Route | Adult single | Child single |"
    assert ("", header) in units
    assert (header, "| R2 Brannock Isle | €19.80 | €9.90 |") in units
    assert not any("---" in s for _, s in units)  # the rule line is not a unit
    assert text_units("- first item here\n- second item here") == [("", "first item here"), ("", "second item here")]


def test_lines_wrapped_inside_a_paragraph_make_one_sentence():
    text = ("The first chair was Agnes Moorcroft, a net maker from\nKelderby who had organised the meeting. "
            "Our first ship,\nthe Heron's Gift, sailed that summer.\n\nA new paragraph starts here.")
    assert [s for _, s in text_units(text)] == [
        "The first chair was Agnes Moorcroft, a net maker from Kelderby who had organised the meeting.",
        "Our first ship, the Heron's Gift, sailed that summer.", "A new paragraph starts here."]
    assert text_units("- an item that wraps\n  onto a second line\n- another item") == [
        ("", "an item that wraps onto a second line"), ("", "another item")]


@pytest.mark.parametrize("markdown, read", [
    ("- **48 hours or more before departure:** you get a full refund.",
     "48 hours or more before departure: you get a full refund."),
    ("Use __exactly__ the *booking* code `KV-2210` from [the portal](https://example.org/p).",
     "Use exactly the booking code KV-2210 from the portal."),
    ("Fares rise 2 * 3 percent; snake_case_names and 5 ** 2 stay.",
     "Fares rise 2 * 3 percent; snake_case_names and 5 ** 2 stay."),
])
def test_sentences_are_read_without_markdowns_inline_marks(markdown, read):
    assert [s for _, s in text_units(markdown)] == [read]


def test_headings_and_faq_questions_are_the_context_of_the_sentences_below_them():
    text = ("## The fleet\n\nMV Kestrel Vane\n\nShe was built in 2019 by Ferrand Marine.\n"
            "Is there Wi-Fi on board?\nYes: the network is called Saltreach-Onboard.")
    assert text_units(text) == [("MV Kestrel Vane", "She was built in 2019 by Ferrand Marine."),
                                ("Is there Wi-Fi on board?", "Yes: the network is called Saltreach-Onboard.")]
    table = "## Fares\n| Route | Adult |\n|---|---|\n| R1 | €12.40 |"
    assert text_units(table) == [("## Fares", "| Route | Adult |"), ("## Fares\n| Route | Adult |", "| R1 | €12.40 |")]


def test_a_heading_travels_with_its_chosen_sentence(tiny_embedder):
    c = chunk(11, "MV Kestrel Vane\n\nThe ship is hybrid-electric. She was built in 2019 by Ferrand\nMarine of Solvik.")
    pairs = focus_chunks("Who built her in 2019?", [c], tiny_embedder,
                         settings=FocusSettings(sentences=1, lexical=5.0))
    assert pairs[0][1].text == "MV Kestrel Vane\nShe was built in 2019 by Ferrand Marine of Solvik."


def test_the_asked_kind_must_be_something_the_question_does_not_already_say(tiny_embedder):
    # both sentences hold a name and the word "chair"; only one names someone the question does not
    c = chunk(12, "The Saltreach Cooperative has a chair. The chair is Tobias Quellan, elected in spring.")
    pairs = focus_chunks("Who is the chair of the Saltreach Cooperative?", [c], tiny_embedder,
                         settings=FocusSettings(sentences=1, lexical=1.0, type_penalty=10.0))
    assert pairs[0][1].text == "The chair is Tobias Quellan, elected in spring."
    d = chunk(13, "In 2023 the ferries sailed every day. In 2023 they carried 418,600 passengers.")
    pairs = focus_chunks("How many passengers sailed in 2023?", [d], tiny_embedder,
                         settings=FocusSettings(sentences=1, lexical=1.0, type_penalty=10.0))
    assert pairs[0][1].text == "In 2023 they carried 418,600 passengers."


@pytest.mark.parametrize("question, answer, holds", [
    ("How many islanders founded it?", "It was founded on 14 March 1987 [1].", False),  # a date, no count
    ("How many islanders founded it?", "212 islanders put money in [1].", True),
    ("What share of sailings ran on time?", "97.6% of them [3].", True),
    ("What share of sailings ran on time?", "We carried 4,912 passengers [3].", False),
    ("How much is a single ticket?", "The crossing takes 2 hours 15 minutes [1].", False),
    ("When does the ferry leave?", "At 06:40 [1].", True),  # a time of day answers "when" too
    ("Who chairs the board?", "Nobody [1].", False),  # no name
    ("Who chairs the board?", "Tobias Quellan, since 2021 [1].", True),
    ("Why do ferries run late?", "Storms [1].", True),  # asks for no shape: nothing to check
    ("How many passengers can she carry?", "She carries up to 38 cars [1].", False),  # counts cars
    ("How many passengers can she carry?", "She is licensed for 312 passengers [1].", True),
    ("How many passengers were carried?", "Passengers carried 418,600 in 2023 [1].", True),
    ("How many nights must you stay?", "You can claim up to €95 per room [2].", False),  # all of €95 is a sum
    ("How many members are there?", "The budget is €12.9 million [1].", False),  # "million" belongs to the sum
    ("What share of sailings ran on time?", "Punctuality rose to 94.3 per cent [1].", True),
    ("What is the tallest vehicle it accepts?", "Every vehicle over 7.5 tonnes is weighed [1].", False),  # no height
    ("What is the tallest vehicle it accepts?", "Maximum vehicle height: 4.6 metres [1].", True),
    ("What is the top speed of Skimmer Two?", "A top speed of 28 knots [1].", True),
    ("What is the largest balance a card can hold?", "Up to €250 [1].", True),  # no dimension: any amount
    ("How much does a child ticket cost?", "Children under five travel free [1].", True),  # free is a price
    ("How much does it cost to hire the launch?", "She links Brannock with car-free Little Orrin [2].", False),
])
def test_answers_shape_wants_a_new_number_of_the_asked_shape(question, answer, holds):
    assert answers_shape(answer, question) is holds


def test_a_count_counts_the_asked_noun_in_the_answer_or_in_the_documents_shown():
    question = "How many passengers can the MV Corrie Dawn carry?"
    shown = "She is licensed for 312 passengers and carries up to 38 cars."
    assert counted_noun(question) == "passe" and counted_numbers(shown, question) == {"312"}
    assert answers_shape("She carries 312 [1].", question, evidence=shown)
    assert not answers_shape("She carries 38 [1].", question, evidence=shown)
    assert not answers_shape("She carries 312 [1].", question)  # nothing says what 312 counts
    assert counted_noun("How many people work there?") is None  # "people": no noun a document repeats
    assert answers_shape("About 140 staff [1].", "How many people work there?")


@pytest.mark.parametrize("question, shapes", [
    ("Who is in charge of safety and compliance?", ("name",)),  # a person, not a charge
    ("Who sells tickets?", ("name",)),
    ("What share of the fare is kept as a fee?", ("percent",)),  # a share, though a fee is money
    ("What reduction do passengers over 66 get on fares?", ("percent", "money")),
    ("How much does an Islander Card take off the fare?", ("percent", "money")),
    ("What email address can I write to?", ("email",)),
    ("Which email address should I use for a charter?", ("email",)),
    ("What is the product code of the Islander Tidecard?", ("code",)),
    ("What is the Harbour Desk's fax number?", ("code",)),
    ("What is the number of ships in the fleet?", ("count",)),  # a number of things counts them
    ("On which days of the week does the winter ferry run?", ("date",)),
    ("What is the deadline for members' motions?", ("date",)),
    ("Why do ferries run late?", None),
])
def test_the_asked_shape_follows_the_question(question, shapes):
    assert asked_shapes(question) == shapes


def _frequency(df: dict[str, int], n_chunks: int = 200):
    return lambda words: (n_chunks, {w: df.get(w, 0) for w in words})


def test_a_name_answers_where_the_question_does_not_say_it_and_the_kb_does_not_repeat_it_everywhere():
    frequency = _frequency({"saltreach": 50, "ferry": 22, "cooperative": 34, "vellmar": 24, "isles": 34, "hesketh": 1, "yard": 2, "june": 9})
    question = "Which shipyard built the MV Corrie Dawn?"
    assert new_names("She was built in 2009 by Hesketh Yard.", question, frequency) == ["Hesketh", "Yard"]
    assert new_names("The MV Corrie Dawn serves the Vellmar Isles [1].", question, frequency) == []  # the setting
    assert new_names("The MV Corrie Dawn serves the Vellmar Isles [1].", question) == ["Vellmar", "Isles"]
    assert new_names("Her maiden voyage is on 16 June 2009 [1].", question, frequency) == []  # a date is no name
    assert not answers_shape("Good tide! The Saltreach Ferry Cooperative owns her [1].", question, "", frequency)
    assert answers_shape("Good tide! Hesketh Yard built her [1].", question, "", frequency)
    # a KB of a few chunks repeats a name in four before it counts as its setting
    assert new_names("It was built by Hesketh Yard.", question, _frequency({"hesketh": 3, "yard": 4}, 10)) == ["Hesketh"]


def test_strict_focus_for_a_name_keeps_sentences_naming_someone_the_kb_does_not_repeat(tiny_embedder):
    c = chunk(17, "The Corrie Dawn serves the Vellmar Isles. She was built in 2009 by Hesketh Yard. "
                  "She carries 312 passengers.")
    frequency = _frequency({"vellmar": 24, "isles": 34, "hesketh": 1, "yard": 2})
    pairs = focus_chunks("Which shipyard built the Corrie Dawn?", [c], tiny_embedder, frequency,
                         FocusSettings(sentences=2, strict=True))
    assert [p[1].text for p in pairs] == ["She was built in 2009 by Hesketh Yard."]


def test_when_asks_for_a_date_only_where_it_opens_the_question():
    assert asked_shapes("When does the ferry leave?") == ("date",)
    assert asked_shapes("Where is the wave height measured when deciding whether to sail?") == ("name",)  # a place


def test_strict_focus_keeps_only_sentences_that_count_the_asked_noun(tiny_embedder):
    prose = chunk(15, "The Corrie Dawn carries up to 38 cars. She is licensed for 312 passengers.")
    table = chunk(16, "| Ship | Passengers | Cars |\n|---|---|---|\n| Kestrel Vane | 220 | 24 |")
    question = "How many passengers can the ships carry?"
    pairs = focus_chunks(question, [prose, table], tiny_embedder, settings=FocusSettings(sentences=4, strict=True))
    texts = [p[1].text for p in pairs]
    assert "She is licensed for 312 passengers." in texts[0] + texts[1]
    assert not any("38 cars" in t for t in texts)
    assert any("| Kestrel Vane | 220 | 24 |" in t for t in texts)  # its header names the passengers


def test_strict_focus_keeps_only_sentences_of_the_asked_shape(tiny_embedder):
    c = chunk(14, "Tickets are sold on board. A single ticket costs €4.50. The crossing takes 40 minutes.")
    pairs = focus_chunks("How much is a single ticket?", [c], tiny_embedder, settings=FocusSettings(sentences=2, strict=True))
    assert [p[1].text for p in pairs] == ["A single ticket costs €4.50."]
    assert focus_chunks("Who sells tickets?", [c], tiny_embedder, settings=FocusSettings(strict=True)) == []  # no name
    assert asked_shapes("Why are tickets sold?") is None and asked_shapes("How much is it?") == ("money",)


def test_content_stems_drop_function_words_and_fold_plurals():
    assert content_stems("How much do I pay for my dogs?") == {"much", "pay", "dogs"}
    assert "dogs" in content_stems("Dogs travel") and "dog" in content_stems("a dog")
    assert content_stems("sailing") == content_stems("sailings")


def test_focus_keeps_the_answering_sentence_inside_its_numbered_document(tiny_embedder):
    settings = FocusSettings(sentences=2, lexical=5.0)  # the tiny embedder is random: let the words decide
    pairs = focus_chunks("What is the charge for a dog?", [FARES, PETS, HISTORY], tiny_embedder, settings=settings)
    assert pairs[0][0] == 2  # best document first, with its citation number
    focused = pairs[0][1]
    assert "The charge for a dog is €2.50." in focused.text
    assert "Assistance dogs always travel free." not in focused.text or len(pairs) == 1
    assert dataclasses.replace(focused, text=PETS.text) == PETS  # provenance unchanged: only the text is cut
    assert sum(len(text_units(c.text)) for _, c in pairs) == 2
    assert all(n != 3 for n, _ in pairs)  # the history chunk had nothing to offer
    rendered = format_context(pairs)
    assert '<document n="2" title="Pets policy">' in rendered
    citations, dropped = resolve_citations("A dog costs €2.50 [2].", [FARES, PETS, HISTORY])
    assert citations[0].chunk is PETS and not dropped  # citations resolve against the whole chunks


def test_a_table_row_travels_with_its_header(tiny_embedder):
    pairs = focus_chunks("What is the adult single fare to Brannock Isle?", [PETS, FARES, HISTORY], tiny_embedder,
                         settings=FocusSettings(sentences=1, lexical=5.0))
    assert pairs == [(2, dataclasses.replace(
        FARES, text="| Route | Adult single | Child single |\n| R2 Brannock Isle | €19.80 | €9.90 |"))]


def test_a_question_asking_for_a_number_prefers_a_sentence_with_one(tiny_embedder):
    # both sentences share the words "islanders" and "founded"; only one holds a number
    c = chunk(4, "The islanders founded a cooperative of their own. Some 212 islanders founded it in 1987.")
    settings = FocusSettings(sentences=1, lexical=1.0, type_penalty=10.0)
    pairs = focus_chunks("How many islanders founded the cooperative?", [c], tiny_embedder,
                         settings=settings)
    assert pairs[0][1].text == "Some 212 islanders founded it in 1987."


def test_focus_off_or_short_context_keeps_whole_chunks(tiny_embedder):
    assert focus_chunks("dog?", [FARES, PETS], tiny_embedder, settings=FocusSettings(sentences=0)) == \
        [(1, FARES), (2, PETS)]
    short = [chunk(5, "One sentence only.")]
    assert focus_chunks("anything?", short, tiny_embedder) == [(1, short[0])]
    assert grounded_user_message("q?", [(2, PETS)]).count("<document") == 1


def test_document_frequencies_come_from_the_full_text_index(filled_kb):
    n, df = filled_kb.document_frequencies(["refunds", "refunded", "ferry", "zebra"])
    assert n == 5
    assert df["refunds"] == 2 and df["refunded"] == 2  # porter-stemmed, like BM25
    assert df["ferry"] == 1 and df["zebra"] == 0
    write_docs(filled_kb, {"/docs/zoo.md": ["A zebra lives at the zoo."]})
    assert filled_kb.document_frequencies(["zebra"]) == (6, {"zebra": 1})


def test_rare_question_words_weigh_more(filled_kb):
    # "refunds" is in two of the KB's five chunks, "ferry" in one: the ferry sentence wins
    a = chunk(6, "The office keeps the refunds. The ferry is blue.")
    pairs = focus_chunks("refunds ferry", [a], filled_kb.embedder, filled_kb.document_frequencies,
                         FocusSettings(sentences=1, lexical=10.0, type_penalty=0.0))
    assert pairs[0][1].text == "The ferry is blue."


def test_the_knowledge_base_focus_uses_its_embedder(filled_kb):
    a = chunk(7, "The harbour office keeps records. The ferry timetable changes in winter. Nothing else here.")
    pairs = filled_kb.focus("ferry timetable winter changes", [a], sentences=1)
    assert pairs == [(1, dataclasses.replace(a, text="The ferry timetable changes in winter."))]


def test_unknown_terms_are_absent_from_the_kb_and_far_from_the_context(filled_kb):
    emb, df = filled_kb.embedder, filled_kb.document_frequencies
    context = [chunk(8, "The ferry leaves the harbour at seven every weekday morning.")]
    # every word of this question is in some chunk of the KB (porter stems: refunded/refunds)
    assert unknown_terms("Are gift cards refunded?", context, emb, df, similarity=1.01) == []
    # 'zebra' and 'mascot' are in no chunk; question words, stopwords and numbers never count
    question = "How many zebra crossings, and what mascot, in 2024?"
    assert unknown_terms(question, context, emb, df, similarity=1.01) == ["zebra", "crossings", "mascot"]
    # anything is close enough, but for the noun that "how many" counts: no word near it counts it
    assert unknown_terms(question, context, emb, df, similarity=-1.01) == ["zebra"]
    assert unknown_terms("Which zebra crossings?", context, emb, df, similarity=-1.01) == []
    # a word the context itself holds (a document not in the KB, passed with the request) is known
    zoo = [chunk(9, "A zebra crossing by the zoo, with a mascot.")]
    assert unknown_terms(question, zoo, emb, df, similarity=0.99) == ["crossings"]


def test_words_naming_the_kind_of_answer_are_never_unknown_terms(filled_kb):
    emb, df = filled_kb.embedder, filled_kb.document_frequencies
    context = [chunk(8, "The ferry leaves the harbour at seven every weekday morning.")]
    # no document says "deadline" or "reduction": a date or a share can still answer them
    for question in ("What is the deadline for the ferry?", "What reduction is there on the ferry?"):
        assert unknown_terms(question, context, emb, df, similarity=1.01) == [], question
    assert unknown_terms("What deadline do zebras get?", context, emb, df, similarity=1.01) == ["zebras"]


def test_the_knowledge_base_checks_unknown_terms_with_its_own_statistics(filled_kb):
    assert filled_kb.unknown_terms("What is the office's fax number?", [], similarity=0.5) == ["fax"]
    write_docs(filled_kb, {"/docs/fax.md": ["Send a fax to 555 0199."]})
    assert filled_kb.unknown_terms("What is the office's fax number?", [], similarity=0.5) == []


def test_sentences_inside_a_document_come_best_first(tiny_embedder):
    c = chunk(10, "Ferries run daily. The harbour café opens at six. A dog ticket costs €2.50 on every route.")
    pairs = focus_chunks("What does a dog ticket cost?", [c], tiny_embedder,
                         settings=FocusSettings(sentences=2, lexical=5.0))
    assert pairs[0][1].text.splitlines()[0] == "A dog ticket costs €2.50 on every route."  # read first, though last


def test_unknown_term_check_accepts_other_forms_of_a_word_in_the_kb(filled_kb):
    # the KB says "weekday": "week" begins it; nothing begins with "happen"
    assert filled_kb.unknown_terms("What happens each week at the harbour?", [], similarity=1.01) == ["happens"]
    n, df = filled_kb.document_frequencies(["week"])
    assert df == {"week": 0}  # exact counts (focus IDF) are unchanged


def test_a_number_of_the_wrong_shape_is_a_weaker_answer_than_the_right_one(tiny_embedder):
    # each pair: the question, a sentence with a number of another shape, the sentence that answers
    cases = [
        ("How many islanders took part in the founding?",
         "The founding took place on 14 March 1987.", "Some 212 islanders took part in the founding."),
        ("How long are found items kept?", "Found items are kept in 2 rooms.", "Found items are kept for 90 days."),
        ("What time does the ferry leave?", "The ferry leaves from berth 4.", "The ferry leaves at 06:40."),
        ("When did the ferry service open?", "The ferry service opened 3 berths.",
         "The ferry service opened in May 2021."),
        ("How much does the ferry ticket cost?", "The ferry ticket is valid for 2 days.",
         "The ferry ticket costs €9.90."),
        ("What share of ferries ran on time?", "Ferries ran on time on 310 days.",
         "Ferries ran on time 94.3% of the time."),
        ("What is the tallest vehicle the ferry takes?", "The ferry takes vehicles on route R4.",
         "The ferry takes vehicles up to 4.6 metres."),
        ("Which number do I text for ferry alerts?", "Ferry alerts come 6 hours ahead; text us.",
         "Text ALERT to 60772 for ferry alerts."),
    ]
    settings = FocusSettings(sentences=1, lexical=1.0, type_penalty=10.0)
    for question, wrong, right in cases:
        for text in (f"{wrong} {right}", f"{right} {wrong}"):
            pairs = focus_chunks(question, [chunk(14, text)], tiny_embedder, settings=settings)
            assert pairs[0][1].text == right, question


def test_a_number_of_the_wrong_shape_still_beats_no_number(tiny_embedder):
    c = chunk(15, "The islanders founded the cooperative together. They founded it on 14 March 1987.")
    pairs = focus_chunks("How many islanders founded the cooperative?", [c], tiny_embedder,
                         settings=FocusSettings(sentences=1, lexical=1.0, type_penalty=10.0))
    assert pairs[0][1].text == "They founded it on 14 March 1987."


@pytest.mark.parametrize("question, text, spans", [
    ("How many passengers can the MV Corrie Dawn carry?",
     "She is licensed for 312 passengers and carries up to 38 cars.", ["312"]),
    ("How many passengers did Saltreach carry in 2023?",
     "Measure | 2023 | 2022\nPassengers carried | 418,600 | 401,900", ["418", "600"]),
    ("What share of sailings ran on time in 2023?", "In 2023, 94.3% of 1,200 sailings ran on time.", ["94.3%"]),
    ("What is the tallest vehicle accepted?", "Vehicles over 7.5 tonnes are weighed. Maximum height: 4.6 metres.",
     ["4.6 metres"]),
    ("How much is a single in 2024?", "In 2024 a single costs €4.50 and takes 2 hours.", ["€4.50"]),
    ("When does it open?", "It opened on 2 June 1987 at 09:20 with 3 staff.", ["2 June 1987", "09:20"]),
    ("Who chairs the board?", "Tobias Quellan chairs the board since 2021.", []),
    ("What is the product code of the Islander Tidecard?", "TC-ISL | Islander Tidecard | Islander Card holders",
     ["TC-ISL"]),  # a code without digits is new all the same
    ("What email address can I write to?", "Write to desk@saltreach.coop. We reply within a day.",
     ["desk@saltreach.coop"]),
])
def test_shaped_spans_are_the_numbers_of_the_asked_shape_the_question_does_not_say(question, text, spans):
    assert shaped_spans(text, question) == spans
