"""Results side of smart-study: tables, figures and statistics from responses and attacks.

Never imports torch. Modules (one per family):

* :mod:`analysis.readers` - response exports and stimulus batches, checked against each
  other (attack result files and transfer summaries are read by :mod:`stimuli.attack_results`);
* :mod:`analysis.stats` - Wilson / Clopper-Pearson intervals, exact binomial and sign
  tests, Holm, d' with the log-linear correction, cluster and two-way bootstraps;
* :mod:`analysis.bt` - Bradley-Terry with ties (Davidson), maximum likelihood;
* :mod:`analysis.glmm` - the mixed logistic model (statsmodels, variational Bayes);
* :mod:`analysis.perceptual` - counts and the three studies;
* :mod:`analysis.attacks` - Tables 1-4, Fig. 2, 4 and 7;
* :mod:`analysis.paper` - the paper's published numbers;
* :mod:`analysis.figures` - plot helpers (``ax=None`` in, ``ax`` out);
* :mod:`analysis.report` and :mod:`analysis.report_attacks` - the report's sections;
* :mod:`analysis.document` - the report as a document, written as HTML, Markdown, CSV, PNG, JSON;
* :mod:`analysis.simulate` - synthetic participants in the export format;
* :mod:`analysis.cli` - ``analysis report`` and ``analysis simulate``.
"""

__version__ = "0.1.0"
