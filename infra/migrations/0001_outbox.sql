-- placeholder: the write path (issue 3) defines the outbox tables here.
SELECT 1;
