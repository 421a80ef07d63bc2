ALTER TABLE task_view ADD COLUMN result TEXT;
