-- 0004: task_logs loses its foreign key to tasks. Postgres checks a foreign
-- key with a query and a row lock for every row inserted: three quarters of
-- the time of a batch of log lines went to it. The store now checks the
-- batch's task once (AppendTaskLogs takes the task row's KEY SHARE lock, as
-- the foreign key's check did, in the transaction that copies the lines in:
-- a task being deleted cannot lose the race), and this trigger deletes a
-- task's log with the task, as ON DELETE CASCADE did: once per task rather
-- than once per line. The trigger's DELETE sees the lines of every
-- transaction that committed before the task row was deleted, since it runs
-- at READ COMMITTED, as every write of berth's does.
ALTER TABLE task_logs DROP CONSTRAINT task_logs_task_id_fkey;

CREATE FUNCTION delete_task_logs() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM task_logs WHERE task_id = OLD.id;
    RETURN NULL;
END
$$;

CREATE TRIGGER tasks_delete_logs AFTER DELETE ON tasks
    FOR EACH ROW EXECUTE FUNCTION delete_task_logs();
