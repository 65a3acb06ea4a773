async def apush_fno(*a, **k):
    raise NotImplementedError
