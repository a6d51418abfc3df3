"""What the measurements mean for the link: traffic characterisation, Gaussian dimensioning, queueing
and processor-sharing latency, growth forecast with the French school calendar, the link plan, plots.

A library on numpy, scipy and matplotlib only (never locust), usable from a notebook. It reads result
files (timeseries.csv, summary.json, bytes_per_second.csv, history CSVs), not objects of other rooms.
"""
