"""A small text-to-image model of digits in styles (UnlearnCanvas in miniature), and its judges.

scikit-learn's digits drawn in eight visual styles at 16x16 RGB, trained into a Stable
Diffusion-format diffusers folder (`models/canvas`), so that erasing a style or a digit can
be measured on CPU: two classifiers, trained on digits the generator never saw, say which
digit and which style a generated image shows.
"""
