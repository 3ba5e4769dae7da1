"""`vidiff train`: a LoRA trained on a folder of pictures, in a file `--lora` (and A1111, ComfyUI) reads.

config.py the settings; data.py pictures, captions, buckets, crops and flips; loop.py the training
step, checkpoints and resume; export.py the file formats; report.py the loss chart and sample pictures.
"""
