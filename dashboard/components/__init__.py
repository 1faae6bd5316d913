"""Pure builders of the dashboard's pieces: formatted values, figures, tables and grids."""
