"""sqlscore for data scientists: register a trained model in one call, score a DataFrame with it.

    import duckdb, sqlscore
    con = duckdb.connect("scores.duckdb", config={"allow_unsigned_extensions": "true"})
    con.execute("INSTALL sqlscore FROM 'dist/repository'; LOAD sqlscore")
    info = sqlscore.register(con, "churn", pipeline, sample=X.head(200))
    con.sql("SELECT score('churn', t) FROM customers t")

`con` may also be a psycopg connection to PostgreSQL with `CREATE EXTENSION sqlscore`.
"""
from .convert import Check, ConversionError, to_onnx
from .registry import DEFAULT_TOLERANCE, Registered, register, score_frame

__all__ = ["register", "score_frame", "to_onnx", "Registered", "Check", "ConversionError", "DEFAULT_TOLERANCE"]
__version__ = "0.1.0"
