"""Lightning callbacks for learning-rate control.

Every callback follows one rule (see ``lr_callbacks.core``)::

    lr_g = scheduled_g * prod(active modifier factors)
"""
