"""A small, real text-to-image model of handwritten digits, and its judge.

The model is trained from scikit-learn's bundled 8x8 digits (nothing is downloaded) into a
Stable Diffusion-format diffusers folder, so that unlearning can be measured on CPU: a
classifier trained on digits the generator never saw says whether a generated image shows
the digit its prompt asked for.
"""
