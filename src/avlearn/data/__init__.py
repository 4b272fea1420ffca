"""Data: AVSynth (``synth``), dataset readers (``datasets``), and turning clips into model inputs."""
