"""Fault-injection suite: real processes, broken on purpose, judged by one checker.

Why a suite of its own: the integration tests show that each part does its job when things go
well; these scenarios kill workers, restart Redis, make Intercom fail in bursts, deliver
webhooks twice and out of order, and pile up thousands of them while no worker runs, and then
compare what the fake Intercom ended with against what it must hold (``checks.check``). One
scenario loads a deliberately broken guard into the worker, to prove the checker notices.
"""
