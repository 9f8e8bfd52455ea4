"""The measures of the benchmark table: their keys, their column labels and what each means.

One place for the names, so that the tables (:mod:`.aggregate`) and the page (:mod:`.html_report`)
say the same thing.
"""

#: The rates of the main table, in column order.
METRICS = ("eff", "reason", "vqa_direct", "vqa_reasoning", "pre_vqa")
#: Every judgement of an image, each with its own judge-error column: post-edit direct and reasoning
#: against the new value, pre-edit against the old value (Pre-edit VQA) and against the new one.
JUDGED = ("vqa_direct", "vqa_reasoning", "pre_vqa", "pre_vqa_target")
LABELS = {"eff": "Eff.", "reason": "Reason.", "vqa_direct": "VQA Direct", "vqa_reasoning": "VQA Reasoning",
          "pre_vqa": "Pre-edit VQA"}
#: One sentence per measure, for readers who have not seen the study.
DEFINITIONS = {
    "eff": "after the edit, the model's most likely next token after the cloze prompt is the new value's first token",
    "reason": "the model's reasoning about the subject states the new value",
    "vqa_direct": "the judge finds the new value in the image drawn from the plain image prompt",
    "vqa_reasoning": "the judge finds the new value in the image drawn from the model's own reasoning",
    "pre_vqa": "before the edit, the judge finds the old value in the image (how well the model draws what it knows)",
}
