"""Every record format in and out, one reader/writer each and one meaning of each field.

    records     batch inputs/outputs: HyPoradise JSON, JSONL, text, Kaldi, SRT/VTT cues, CSV/TSV
    tabular     CSV/TSV exports with column detection (what vendors' tools write)
    hyporadise  HyPoradise lists <-> Utterance (am_score = sum of token log-probs)
    transcript  a Transcript as txt/json/srt/vtt/tsv
"""
