def pytest_configure(config):
    config.addinivalue_line("markers", "slow: takes about 10 s; deselect with -m 'not slow'")
