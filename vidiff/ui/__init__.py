"""`vidiff ui`: a local web page (Gradio) and its API over the same library calls as the command line.

app.py builds the page and serves it, controls.py makes a control of each setting from its declaration,
jobs.py runs one job at a time in a folder the UI owns. Needs `pip install vidiff[ui]`.
"""
