"""The sandbox: fakes of Intercom and Sanity that behave like the vendors on what the product
depends on, the sample data, and the helpers ``intercom-sync dev --sandbox`` runs them with.

May import anything it fakes against; only the operator tools and the tests import it.
"""
