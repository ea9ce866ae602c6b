"""Orders, against the PostgreSQL whose login azpytest read from Key Vault."""

import pytest


@pytest.fixture
def orders(db_connection):
    db_connection.execute("create temporary table orders (id int primary key, total numeric)")
    db_connection.execute("insert into orders values (1, 12.50), (2, 7.25), (3, 30.00)")
    return db_connection


def test_orders_total(orders):
    (total,) = orders.execute("select sum(total) from orders").fetchone()
    assert float(total) == 49.75


def test_largest_order(orders):
    (order_id,) = orders.execute("select id from orders order by total desc limit 1").fetchone()
    assert order_id == 3


@pytest.mark.parametrize("order_id", [1, 2])
def test_order_exists(orders, order_id):
    assert orders.execute("select 1 from orders where id = %s", (order_id,)).fetchone()
