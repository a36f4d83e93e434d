"""Market-data providers (Alpha Vantage, Polygon, file replay) behind one interface."""
