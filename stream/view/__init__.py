"""``lus-view``: the display side of lus-stream — subscribe, validate, draw the overlay, show/record it.

``overlay`` draws (pure numpy/OpenCV), ``subscriber`` receives and validates the engine's messages and
keeps the newest of each topic, ``cli`` is the ``lus-view`` command (window, ``--out`` video, snapshots,
``--print``), ``sample`` builds demo-like messages for the docs still and the tests.
"""
