"""Inopsio ERP: customers, catalogue, invoices and credit notes, payments (manual and Stripe), PDF and
e-invoices (Factur-X, UBL), reports."""

__version__ = "0.1.0"
