"""Train, evaluate, report and export the digit classifiers and the clothing VAEs.

Run ``python -m training --help``. Importing this package stays cheap: TensorFlow
is only imported by the modules that build, train or export models.
"""
