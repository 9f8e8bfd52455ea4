"""The benchmark core: text metrics, edit runs, (later) image generation and VQA judging."""
