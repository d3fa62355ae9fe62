"""Attacks by a malicious server on the hospitals' updates, used to test what the defences really protect.

:mod:`fedsynth.attacks.imprint` builds and inverts the linear-imprint ("binning") layer of
"Robbing the Fed: Directly Obtaining Private Data in Federated Learning with Modified Models" and
"When the Curious Abandon Honesty: Federated Learning Is Not Private"; :mod:`fedsynth.attacks.scoring`
measures how close the reconstructions come to the true records.
"""
