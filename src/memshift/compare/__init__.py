"""Consistency of the two stores: normalization, structural diff, noise, the report.

Nothing here does I/O or imports aiohttp: the proxy hands over two observations and
gets a comparison back.
"""
