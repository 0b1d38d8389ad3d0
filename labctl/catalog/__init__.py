"""The lab catalog: lab definitions (``labs/<id>/lab.yaml``) as validated data, and their starter templates.

Pure logic and data: it reads lab files and templates, and imports no cloud SDK. :mod:`.models` is the shape of a
lab, :mod:`.loader` reads the catalog with errors naming file, line and field and renders starter templates,
:mod:`.durations` and :mod:`.windows` parse the time values lab files hold.
"""
