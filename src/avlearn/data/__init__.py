"""Data: AVSynth (``synth``), dataset readers (``datasets``), stores and ``avlearn extract`` (``store``, ``extract``,
``features``), and turning clips into model inputs (``segments``, the per-task ``pipelines``)."""
